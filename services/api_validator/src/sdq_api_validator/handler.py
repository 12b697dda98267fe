"""Lambda entry point of the API front door (API Gateway REST proxy integration)."""

from __future__ import annotations

import os
from typing import Any

from sdq_api_validator import telemetry
from sdq_api_validator.adapters.http import Api
from sdq_api_validator.app import build_api
from sdq_api_validator.logs import configure
from sdq_api_validator.settings import Settings

_api: Api | None = None


def _get_api() -> Api:
    global _api  # noqa: PLW0603 - one API (and one set of clients) per Lambda container
    if _api is None:
        configure(os.environ.get("SDQ_LOG_LEVEL", "INFO"))
        telemetry.configure(
            trace_dir=os.environ.get("SDQ_TRACE_DIR"),
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        )
        _api = build_api(Settings.from_env())
    return _api


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # With X-Ray active tracing, Lambda puts its segment's header in _X_AMZN_TRACE_ID.
    return _get_api().handle(event, os.environ.get("_X_AMZN_TRACE_ID"))
