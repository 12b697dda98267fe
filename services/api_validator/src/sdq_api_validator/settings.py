"""Settings of the api_validator: the environment is read here and nowhere else.

Names follow the Lambda's environment as Terraform sets it (SDQ_*, OTEL_EXPORTER_OTLP_ENDPOINT,
_X_AMZN_TRACE_ID is per invocation and read by the handler through :func:`lambda_trace_header`).
Validation errors name each bad variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sdq_contracts.config import MAX_DOWNLOAD_LINK_SECONDS, RuntimeConfig
from sdq_contracts.settings import SettingsError, load

__all__ = ["Settings", "SettingsError", "lambda_trace_header", "load_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SDQ_", frozen=True, extra="ignore", populate_by_name=True
    )

    # JSON list of the deployment's runtimes (name, type, model, ...), as Terraform writes it.
    runtimes: Annotated[tuple[RuntimeConfig, ...], NoDecode, Field(min_length=1)]
    input_topic_arn: Annotated[str, Field(min_length=1)]
    status_table: Annotated[str, Field(min_length=1)]
    output_bucket: Annotated[str, Field(min_length=3)]
    max_body_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    claim_check_bytes: Annotated[int, Field(ge=1024)] = 200_000
    status_ttl_days: Annotated[int, Field(ge=1)] = 30
    # Lifetime of the download links of each status answer (deployment config
    # downloads.link_seconds; a link also stops working when the role session that signed it ends).
    download_link_seconds: Annotated[int, Field(ge=60, le=MAX_DOWNLOAD_LINK_SECONDS)] = 3600
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "INFO"
    # Local stack: spans also go, as JSON lines, to a file in this directory (`sdq trace`).
    trace_dir: str | None = None
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    @field_validator("runtimes", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str | bytes):
            import json  # noqa: PLC0415 - only for the environment's string form

            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of runtimes: {exc}") from None
        return value

    @field_validator("trace_dir", "otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (or ``environ``); SettingsError names each variable."""
    return load(Settings, environ, service="api_validator", plain=("OTEL_EXPORTER_OTLP_ENDPOINT",))


def lambda_trace_header() -> str | None:
    """With X-Ray active tracing, Lambda puts its segment's header in ``_X_AMZN_TRACE_ID``
    (set per invocation, so read per invocation)."""
    return os.environ.get("_X_AMZN_TRACE_ID")
