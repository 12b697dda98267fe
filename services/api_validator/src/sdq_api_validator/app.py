"""Composition root: settings → logs and traces → boto3 clients → adapters → TaskService → Api."""

from __future__ import annotations

import functools
from typing import Any

from sdq_api_validator.adapters.http import Api
from sdq_api_validator.domain.service import ApiSettings, TaskService
from sdq_api_validator.settings import Settings, load_settings
from sdq_observability.logs import configure_logging
from sdq_observability.tracing import configure_tracing

SERVICE_NAME = "sdq-api-validator"


def configure_observability(settings: Settings) -> None:
    configure_logging(settings.log_level)
    # Spans are recorded even without an export: the status row carries the task's trace id.
    configure_tracing(
        SERVICE_NAME,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        trace_dir=settings.trace_dir,
        record_without_export=True,
    )


def build_api(settings: Settings, session: Any = None, endpoint_url: str | None = None) -> Api:
    """Clients are created here once per process (one Lambda container, one front door)."""
    # boto3 is imported on first use, not at module import: keeps the Lambda's cold import lean.
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    from sdq_api_validator.adapters.aws import (  # noqa: PLC0415
        DynamoStatusStore,
        S3ClaimStore,
        S3LinkSigner,
        SnsPublisher,
    )

    session = session or boto3.session.Session()
    config = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10
    )

    def client(name: str) -> Any:
        return session.client(name, config=config, endpoint_url=endpoint_url)

    # Download links must be SigV4 (botocore presigns S3 with legacy SigV2 unless told, and S3
    # refuses SigV2 for SSE-KMS objects); S3's own calls are SigV4 already.
    s3 = session.client(
        "s3",
        config=config.merge(Config(signature_version="s3v4")),
        endpoint_url=endpoint_url,
    )

    service = TaskService(
        ApiSettings(
            runtimes=settings.runtimes,
            output_bucket=settings.output_bucket,
            claim_check_bytes=settings.claim_check_bytes,
            status_ttl_days=settings.status_ttl_days,
            download_link_seconds=settings.download_link_seconds,
        ),
        DynamoStatusStore(client("dynamodb"), settings.status_table),
        SnsPublisher(client("sns"), settings.input_topic_arn),
        S3ClaimStore(s3, settings.output_bucket),
        S3LinkSigner(s3),
    )
    return Api(service, settings.max_body_bytes)


@functools.cache
def lambda_api() -> Api:
    """Built on the first invocation and reused by every warm invocation of the container."""
    settings = load_settings()
    configure_observability(settings)
    return build_api(settings)
