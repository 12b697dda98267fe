"""AWS Lambda entry point: ``sdq_model_sync.handler.handle``."""

from __future__ import annotations

from typing import Any

from sdq_model_sync.composition import lambda_app


def handle(event: dict[str, Any], context: object) -> dict[str, Any]:
    return lambda_app().handle(event)
