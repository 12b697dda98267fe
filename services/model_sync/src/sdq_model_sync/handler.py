"""AWS Lambda entry point: ``sdq_model_sync.handler.handle``."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import context, propagate

from sdq_model_sync.composition import lambda_app


def handle(event: dict[str, Any], lambda_context: object) -> dict[str, Any]:
    # With X-Ray active tracing, Lambda puts its segment's header in _X_AMZN_TRACE_ID: the spans
    # of this invocation continue that trace.
    header = os.environ.get("_X_AMZN_TRACE_ID")
    token = context.attach(propagate.extract({"X-Amzn-Trace-Id": header})) if header else None
    try:
        return lambda_app().handle(event)
    finally:
        if token is not None:
            context.detach(token)
