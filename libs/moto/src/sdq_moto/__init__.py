"""moto as sdq runs it as a server (see README.md): ``sdq_moto.isolation`` (DynamoDB requests one
at a time), ``sdq_moto.transactions`` (a failed transaction rolled back by item, not by copies
of whole tables), ``sdq_moto.lookups`` (per-request lookups done once)."""

from sdq_moto.isolation import isolate_dynamodb
from sdq_moto.lookups import cache_request_lookups
from sdq_moto.transactions import item_snapshot_transactions

__all__ = [
    "cache_request_lookups",
    "isolate_dynamodb",
    "item_snapshot_transactions",
    "prepare_moto_server",
]


def prepare_moto_server() -> None:
    """Everything sdq changes in moto (this process) before serving it. Idempotent."""
    isolate_dynamodb()
    item_snapshot_transactions()
    cache_request_lookups()
