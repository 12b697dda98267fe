"""Composition root: settings → logs and traces → boto3 clients (once per container) →
adapters → ModelSync."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from sdq_model_sync.adapters.ec2_nodes import Ec2GpuNodes
from sdq_model_sync.adapters.ssm_commands import SsmCommands
from sdq_model_sync.domain.commands import NodeSyncSpec
from sdq_model_sync.domain.ports import CommandSender, NodeFinder
from sdq_model_sync.domain.sync import ModelSync
from sdq_model_sync.settings import Settings, load_settings
from sdq_observability.logs import configure_logging
from sdq_observability.tracing import configure_tracing

SERVICE_NAME = "sdq-model-sync"

_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20}
_RETRYING = Config(retries={"mode": "standard", "max_attempts": 4}, **_TIMEOUTS)
# Reporting what is visible right after sending is best effort: one attempt, no backoff.
_ONE_SHOT = Config(retries={"mode": "standard", "total_max_attempts": 1}, **_TIMEOUTS)


def configure_observability(settings: Settings) -> None:
    configure_logging(settings.log_level)
    # Spans go over OTLP to the ADOT collector layer when it is configured; else a no-op.
    configure_tracing(SERVICE_NAME, otlp_endpoint=settings.otel_exporter_otlp_endpoint)


def node_sync_spec(settings: Settings) -> NodeSyncSpec:
    return NodeSyncSpec(
        script_path=settings.node_script_path,
        bucket=settings.model_bucket,
        prefix=settings.model_prefix,
        cache_dir=settings.model_cache_dir,
        region=settings.region,
        execution_timeout_seconds=settings.execution_timeout_seconds,
        delivery_timeout_seconds=settings.delivery_timeout_seconds,
    )


def build_model_sync(
    settings: Settings,
    *,
    session: Any | None = None,
    nodes: NodeFinder | None = None,
    sender: CommandSender | None = None,
) -> ModelSync:
    """Wire the use case; pass ``nodes``/``sender`` to replace the AWS adapters (local stack)."""
    aws: Any = session if session is not None else boto3.session.Session()
    if nodes is None:
        ec2 = aws.client("ec2", region_name=settings.region, config=_RETRYING)
        nodes = Ec2GpuNodes(ec2, settings.cluster_name)
    if sender is None:
        ssm = aws.client("ssm", region_name=settings.region, config=_RETRYING)
        report = aws.client("ssm", region_name=settings.region, config=_ONE_SHOT)
        sender = SsmCommands(ssm, report)
    return ModelSync(spec=node_sync_spec(settings), nodes=nodes, sender=sender)


@functools.cache
def lambda_app() -> ModelSync:
    """Built on the first invocation and reused by every warm invocation of the container."""
    settings = load_settings()
    configure_observability(settings)
    return build_model_sync(settings)
