"""The agent's configuration: environment variables only, read here and nowhere else.

Names follow the fixed runtime contract (SDQ_*, AWS_REGION, AWS_ENDPOINT_URL,
OTEL_EXPORTER_OTLP_ENDPOINT). Validation errors name each bad variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sdq_contracts.config import (
    MAX_DOWNLOAD_LINK_SECONDS,
    MAX_TASK_TIMEOUT_SECONDS,
    NAME_PATTERN,
    RuntimeType,
)
from sdq_contracts.settings import SettingsError, load

__all__ = ["AgentSettings", "SettingsError", "load_settings"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SDQ_", frozen=True, extra="ignore")

    # --- the runtime this agent feeds ---
    runtime_name: Annotated[str, Field(pattern=NAME_PATTERN)]
    runtime_type: RuntimeType
    runtime_url: Annotated[str, Field(pattern=r"^https?://[^/]+")]
    static_model: str | None = None
    dynamic_model: bool = False
    # The node's model cache as the runtime container sees it (InvokeAI installs models from
    # there by path; the k8s components mount it at /models).
    runtime_models_dir: Annotated[str, Field(min_length=1)] = "/models"
    # ComfyUI only: its base directory (holding input/ and output/) as mounted in the agent's
    # container; the agent removes each task's files there once its outputs are read.
    comfyui_data_dir: Path | None = None
    # --- AWS resources ---
    queue_url: Annotated[str, Field(min_length=1)]
    result_topic_arn: Annotated[str, Field(min_length=1)]
    status_table: Annotated[str, Field(min_length=1)]
    output_bucket: Annotated[str, Field(min_length=3)]
    model_bucket: str = ""
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    # Local stack: spans also go, as JSON lines, to a file in this directory (`sdq trace`).
    trace_dir: str | None = None
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    # Lifetime of the download links in notifications (deployment config downloads.link_seconds;
    # a link also stops working when the role session that signed it ends).
    download_link_seconds: Annotated[int, Field(ge=60, le=MAX_DOWNLOAD_LINK_SECONDS)] = 3600
    # --- task semantics ---
    task_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_TASK_TIMEOUT_SECONDS)] = 300
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 3
    # runtimes[].retry_on_deadline: retry a task interrupted at its deadline (default: fail it).
    retry_on_deadline: bool = False
    # Days a status row the agent must create lives (the API's status_ttl_days).
    status_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Visibility the agent keeps on every held message (heartbeat every third of it).
    # Default: the task timeout plus a minute, like the queue's own default.
    visibility_seconds: Annotated[int, Field(ge=2, le=43_200)] | None = None
    retry_backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = 10
    retry_backoff_max_seconds: Annotated[float, Field(ge=0, le=43_200)] = 300
    # --- pipeline ---
    concurrency: Annotated[int, Field(ge=1, le=16)] = 1
    # Tasks received and prepared ahead of the runtime (a receive waits for half of them to be
    # free, so one call brings several).
    prefetch: Annotated[int, Field(ge=0, le=10)] = 4
    # Short generations deepen the prefetch (up to ten) until this much generation time is
    # prepared ahead: at 0.1 s per image, 4 tasks would be 0.4 s, less than one slow AWS call.
    prefetch_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    # Send the next task's request while the runtime still generates, so it starts the moment
    # the current one ends (used with runtimes that queue requests in order: SD WebUI).
    runtime_lookahead: bool = True
    wait_time_seconds: Annotated[int, Field(ge=0, le=20)] = 20
    interrupt_grace_seconds: Annotated[float, Field(gt=0, le=600)] = 15
    # --- start-up / shutdown ---
    readiness_timeout_seconds: Annotated[float, Field(gt=0, le=7200)] = 900
    readiness_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 2
    drain_seconds: Annotated[float, Field(ge=0, le=3600)] = 60
    # How often held tasks' status rows are looked at for cancel requests (one call per task
    # per period, folded into the lease renew when that is due).
    cancel_poll_seconds: Annotated[float, Field(gt=0, le=300)] = 5
    # Longest a settled message waits to be deleted in a batch of up to ten (capped at a sixth
    # of the visibility).
    delete_batch_seconds: Annotated[float, Field(ge=0, le=10)] = 5
    drain_file: Path | None = None
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    # --- inputs and callbacks ---
    url_allowlist: Annotated[tuple[IpNetwork, ...], NoDecode] = ()
    max_input_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 20 * 1024 * 1024
    # Outputs larger than one part upload as multipart (S3 parts are 5 MiB to 5 GiB).
    upload_part_mib: Annotated[int, Field(ge=5, le=5120)] = 8
    input_connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5
    input_read_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30
    webhook_secret: SecretStr | None = None
    webhook_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    webhook_backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 1
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "INFO"

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "static_model",
        "drain_file",
        "aws_endpoint_url",
        "trace_dir",
        "comfyui_data_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("runtime_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def visibility(self) -> int:
        if self.visibility_seconds is not None:
            return self.visibility_seconds
        return min(int(self.task_timeout_seconds) + 60, 43_200)

    @property
    def input_buckets(self) -> frozenset[str]:
        """Buckets an ``s3://`` input may come from."""
        return frozenset(b for b in (self.output_bucket, self.model_bucket) if b)


def load_settings(environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Read and validate the environment (or ``environ``); SettingsError names each variable."""
    return load(
        AgentSettings,
        environ,
        service="queue agent",
        plain=(
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    )
