"""Composition root: settings → clients (one per AWS service, one HTTP session per runtime)
→ adapters → worker; start-up readiness, signals, drain file, orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sdq_contracts.config import RuntimeType
from sdq_queue_agent.adapters.aws import DynamoStatusStore, S3Store, SnsPublisher, SqsQueue
from sdq_queue_agent.adapters.comfyui import ComfyUiRuntime
from sdq_queue_agent.adapters.http_fetch import UrlFetcher, safe_session
from sdq_queue_agent.adapters.http_server import HealthState, start_health_server
from sdq_queue_agent.adapters.invokeai import InvokeAiRuntime
from sdq_queue_agent.adapters.runtime_http import runtime_session
from sdq_queue_agent.adapters.sdwebui import SdWebUiRuntime
from sdq_queue_agent.adapters.webhook import HttpWebhookSender
from sdq_queue_agent.domain.ports import Runtime
from sdq_queue_agent.domain.worker import Worker, WorkerConfig
from sdq_queue_agent.errors import StartupError, TaskFailure
from sdq_queue_agent.logs import configure_logging
from sdq_queue_agent.metrics import AgentMetrics
from sdq_queue_agent.settings import AgentSettings
from sdq_queue_agent.tracing import configure_tracing

_log = structlog.get_logger("sdq_queue_agent")
# A key that never exists: start-up calls read it to open connections.
WARMUP_KEY = "_sdq/agent-warm-up"

RUNTIMES: dict[RuntimeType, Callable[[AgentSettings, aiohttp.ClientSession], Runtime]] = {
    RuntimeType.SDWEBUI: lambda s, session: SdWebUiRuntime(
        session, s.runtime_url, static_model=s.static_model, dynamic_model=s.dynamic_model
    ),
    RuntimeType.COMFYUI: lambda s, session: ComfyUiRuntime(
        session, s.runtime_url, data_dir=s.comfyui_data_dir
    ),
    RuntimeType.INVOKEAI: lambda s, session: InvokeAiRuntime(
        session, s.runtime_url, static_model=s.static_model, models_dir=s.runtime_models_dir
    ),
}


def worker_config(settings: AgentSettings) -> WorkerConfig:
    return WorkerConfig(
        runtime_name=settings.runtime_name,
        output_bucket=settings.output_bucket,
        input_buckets=settings.input_buckets,
        task_timeout=settings.task_timeout_seconds,
        visibility=settings.visibility,
        max_receive_count=settings.max_receive_count,
        retry_on_deadline=settings.retry_on_deadline,
        status_ttl_days=settings.status_ttl_days,
        agent_id=f"{socket.gethostname()}:{os.getpid()}",
        max_input_bytes=settings.max_input_bytes,
        backoff_base=settings.retry_backoff_seconds,
        backoff_max=settings.retry_backoff_max_seconds,
        concurrency=settings.concurrency,
        prefetch=settings.prefetch,
        wait_time=settings.wait_time_seconds,
        burst_wait_time=min(settings.wait_time_seconds, 1),
        interrupt_grace=settings.interrupt_grace_seconds,
        drain_seconds=settings.drain_seconds,
        runtime_poll_seconds=settings.readiness_interval_seconds,
        cancel_poll_seconds=settings.cancel_poll_seconds,
    )


def _boto_config(settings: AgentSettings) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=settings.wait_time_seconds + 15,  # above the long poll
        max_pool_connections=32,
        tcp_keepalive=True,
    )


async def wait_until_ready(runtime: Runtime, settings: AgentSettings, stop: asyncio.Event) -> bool:
    """Ping the runtime until it answers; bounded in time, each attempt logged."""
    deadline = time.monotonic() + settings.readiness_timeout_seconds
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            await runtime.ping()
        except TaskFailure as exc:
            left = deadline - time.monotonic()
            _log.info(
                "runtime not ready yet",
                attempt=attempt,
                error=exc.message,
                seconds_left=round(left, 1),
            )
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(settings.readiness_interval_seconds, left))
            continue
        _log.info("runtime ready", attempt=attempt)
        return True
    return False


async def run_agent(
    settings: AgentSettings, *, burst: bool = False, health: HealthState | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or, with ``burst``, until the queue is empty); the exit code."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    configure_logging(settings.log_level, secrets=[secret] if secret else [])
    provider = configure_tracing(
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        trace_dir=settings.trace_dir,
        runtime_name=settings.runtime_name,
    )
    structlog.contextvars.bind_contextvars(runtime=settings.runtime_name)
    health = health or HealthState()
    metrics = AgentMetrics(settings.runtime_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker: Worker | None = None

    def on_signal(signame: str) -> None:
        _log.info("signal received; draining", signal=signame)
        health.stopping = True
        stop.set()
        if worker is not None:
            worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        async with AsyncExitStack() as stack:
            clients = await open_clients(stack, settings)
            runner = await start_health_server(health, metrics, settings.http_port)
            stack.push_async_callback(runner.cleanup)
            runtime = RUNTIMES[settings.runtime_type](settings, clients.to_runtime)
            worker = build_worker(settings, clients, runtime, metrics, secret)
            if secret is None:
                _log.warning("SDQ_WEBHOOK_SECRET is not set: webhooks go out unsigned")
            _log.info(
                "queue agent starting",
                runtime_type=runtime.kind,
                queue=settings.queue_url,
                concurrency=settings.concurrency,
                prefetch=settings.prefetch,
                burst=burst,
            )
            await check_aws(clients, settings)
            if not await wait_until_ready(runtime, settings, stop):
                if stop.is_set():
                    _finish_drain(settings, health)
                    return 0
                _log.error(
                    "runtime never became ready", timeout_s=settings.readiness_timeout_seconds
                )
                return 1
            await runtime.startup_check()
            if stop.is_set():
                worker.stop()
            health.ready = True
            await worker.run(burst=burst)
    except StartupError as exc:
        _log.error("start-up check failed", error=str(exc))
        health.alive = False
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    _finish_drain(settings, health)
    return 0


@dataclass(frozen=True)
class _Clients:
    sqs: Any
    s3: Any
    sns: Any
    dynamodb: Any
    to_runtime: aiohttp.ClientSession
    to_users: aiohttp.ClientSession


async def open_clients(stack: AsyncExitStack, settings: AgentSettings) -> _Clients:
    """One aioboto3 client per AWS service and one HTTP session per destination, closed by
    ``stack`` on shutdown."""
    session = aioboto3.Session(region_name=settings.aws_region)
    kwargs: dict[str, Any] = {
        "endpoint_url": settings.aws_endpoint_url,
        "config": _boto_config(settings),
    }
    aws = {
        name: await stack.enter_async_context(session.client(name, **kwargs))
        for name in ("sqs", "s3", "sns", "dynamodb")
    }
    to_runtime = await stack.enter_async_context(runtime_session())
    to_users = await stack.enter_async_context(
        safe_session(settings.url_allowlist, connect_timeout=settings.input_connect_timeout_seconds)
    )
    return _Clients(**aws, to_runtime=to_runtime, to_users=to_users)


def build_worker(
    settings: AgentSettings,
    clients: _Clients,
    runtime: Runtime,
    metrics: AgentMetrics,
    secret: str | None,
) -> Worker:
    return Worker(
        worker_config(settings),
        queue=SqsQueue(clients.sqs, settings.queue_url),
        store=S3Store(clients.s3),
        publisher=SnsPublisher(clients.sns, settings.result_topic_arn),
        status=DynamoStatusStore(clients.dynamodb, settings.status_table),
        fetcher=UrlFetcher(
            clients.to_users,
            settings.url_allowlist,
            max_bytes=settings.max_input_bytes,
            read_timeout=settings.input_read_timeout_seconds,
        ),
        webhooks=HttpWebhookSender(
            clients.to_users,
            settings.url_allowlist,
            secret.encode("utf-8") if secret else None,
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff_seconds,
            timeout=settings.webhook_timeout_seconds,
        ),
        runtime=runtime,
        metrics=metrics,
    )


async def check_aws(clients: _Clients, settings: AgentSettings) -> None:
    """Start-up check of the queue (exists; redrive matches SDQ_MAX_RECEIVE_COUNT) that also
    warms the clients (endpoints, connections), so the first task pays no set-up cost."""
    try:
        attrs = (
            await clients.sqs.get_queue_attributes(
                QueueUrl=settings.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            )
        )["Attributes"]
    except (ClientError, BotoCoreError) as exc:
        raise StartupError(f"cannot read the queue {settings.queue_url}: {exc}") from None
    redrive = json.loads(attrs.get("RedrivePolicy") or "{}")
    if (
        int(redrive.get("maxReceiveCount", settings.max_receive_count))
        != settings.max_receive_count
    ):
        _log.warning(
            "SDQ_MAX_RECEIVE_COUNT differs from the queue's redrive policy",
            queue_max_receive_count=redrive.get("maxReceiveCount"),
            agent_max_receive_count=settings.max_receive_count,
        )
    if not redrive:
        _log.warning("the queue has no dead-letter queue: poison messages will cycle")
    warm = (
        clients.dynamodb.get_item(TableName=settings.status_table, Key={"id": {"S": WARMUP_KEY}}),
        clients.s3.head_object(Bucket=settings.output_bucket, Key=WARMUP_KEY),
    )
    for call in warm:
        try:
            await call
        except (ClientError, BotoCoreError) as exc:
            _log.debug("warm-up call failed (harmless)", error=str(exc))


def _finish_drain(settings: AgentSettings, health: HealthState) -> None:
    health.ready = False
    health.drained = True
    if settings.drain_file is not None:
        settings.drain_file.parent.mkdir(parents=True, exist_ok=True)
        settings.drain_file.write_text("drained\n", encoding="utf-8")
    _log.info(
        "drained; exiting", drain_file=str(settings.drain_file) if settings.drain_file else None
    )
