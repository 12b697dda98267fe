"""Lambda entry point of the API front door (API Gateway REST proxy integration)."""

from __future__ import annotations

from typing import Any

from sdq_api_validator.app import lambda_api
from sdq_api_validator.settings import lambda_trace_header


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return lambda_api().handle(event, lambda_trace_header())
