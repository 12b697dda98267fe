"""moto as sdq runs it as a server: see ``sdq_moto.isolation``."""

from sdq_moto.isolation import isolate_dynamodb

__all__ = ["isolate_dynamodb"]
