"""Settings of model_sync: the environment is read here and nowhere else.

Names follow the Lambda's environment as Terraform sets it (SDQ_*, AWS_REGION,
OTEL_EXPORTER_OTLP_ENDPOINT; _X_AMZN_TRACE_ID is per invocation, read through
:func:`lambda_trace_header`). Validation errors name each bad variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sdq_contracts.naming import MODEL_CACHE_HOST_PATH
from sdq_contracts.settings import SettingsError, load

__all__ = ["DEFAULT_NODE_SCRIPT_PATH", "Settings", "SettingsError", "load_settings"]

DEFAULT_NODE_SCRIPT_PATH = "/opt/sdq/sdq-model-sync.sh"
# AWS-RunShellScript's executionTimeout accepts up to 48 hours.
_MAX_EXECUTION_TIMEOUT = 172_800
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SDQ_",
        frozen=True,
        extra="ignore",
        str_strip_whitespace=True,
        populate_by_name=True,
    )

    cluster_name: Annotated[str, Field(min_length=1)]
    model_bucket: str
    model_prefix: str = ""
    node_script_path: str = DEFAULT_NODE_SCRIPT_PATH
    model_cache_dir: str = MODEL_CACHE_HOST_PATH
    region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # How long the script may run on a node (a first sync of many checkpoints is slow).
    execution_timeout_seconds: Annotated[
        int, Field(ge=60, le=_MAX_EXECUTION_TIMEOUT, validation_alias="SDQ_SYNC_TIMEOUT_SECONDS")
    ] = 3600
    # How long SSM keeps trying to deliver the command to a node.
    delivery_timeout_seconds: Annotated[
        int, Field(ge=30, le=2_592_000, validation_alias="SDQ_SYNC_DELIVERY_TIMEOUT_SECONDS")
    ] = 600
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "INFO"
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    @field_validator(
        "region",
        "otel_exporter_otlp_endpoint",
        "node_script_path",
        "model_cache_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip() and info.field_name:
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("model_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError(f"not a valid S3 bucket name: {value!r}")
        return value

    @field_validator("node_script_path", "model_cache_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (or ``environ``); SettingsError names each variable."""
    return load(
        Settings,
        environ,
        service="model_sync",
        plain=(
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "SDQ_SYNC_TIMEOUT_SECONDS",
            "SDQ_SYNC_DELIVERY_TIMEOUT_SECONDS",
        ),
    )


def lambda_trace_header() -> str | None:
    """With X-Ray active tracing, Lambda puts its segment's header in ``_X_AMZN_TRACE_ID``
    (set per invocation, so read per invocation)."""
    return os.environ.get("_X_AMZN_TRACE_ID")
