"""AWS Lambda entry point: ``sdq_model_sync.handler.handle``."""

from __future__ import annotations

from typing import Any

from sdq_model_sync.app import lambda_app
from sdq_model_sync.settings import lambda_trace_header
from sdq_observability.tracing import continued_trace


def handle(event: dict[str, Any], lambda_context: object) -> dict[str, Any]:
    # The spans of this invocation continue the trace of Lambda's X-Ray segment.
    with continued_trace(lambda_trace_header()):
        return lambda_app().handle(event)
