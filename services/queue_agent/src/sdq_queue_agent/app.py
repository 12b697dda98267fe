"""Composition root: settings → clients (one per AWS service, one HTTP session per runtime)
→ adapters → worker; start-up readiness, signals, drain file, orderly shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
import structlog
from botocore.config import Config
from opentelemetry.instrumentation.aiobotocore import AioBotocoreInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from sdq_contracts.config import RuntimeType
from sdq_observability.logs import configure_logging
from sdq_observability.tracing import configure_tracing
from sdq_queue_agent.adapters.aws import (
    DynamoStatusStore,
    S3LinkSigner,
    S3Store,
    SnsPublisher,
    SqsQueue,
)
from sdq_queue_agent.adapters.comfyui import ComfyUiRuntime
from sdq_queue_agent.adapters.http_fetch import UrlFetcher, safe_session
from sdq_queue_agent.adapters.http_server import HealthState, start_health_server
from sdq_queue_agent.adapters.invokeai import InvokeAiRuntime
from sdq_queue_agent.adapters.prometheus import PrometheusMetrics
from sdq_queue_agent.adapters.runtime_http import runtime_session
from sdq_queue_agent.adapters.sdwebui import SdWebUiRuntime
from sdq_queue_agent.adapters.webhook import HttpWebhookSender
from sdq_queue_agent.domain.ports import Runtime
from sdq_queue_agent.domain.readiness import wait_for_runtime
from sdq_queue_agent.domain.worker import Worker, WorkerConfig
from sdq_queue_agent.errors import StartupError
from sdq_queue_agent.settings import AgentSettings

SERVICE_NAME = "sdq-queue-agent"
_log = structlog.get_logger("sdq_queue_agent")

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
        download_link_seconds=settings.download_link_seconds,
        agent_id=f"{socket.gethostname()}:{os.getpid()}",
        max_input_bytes=settings.max_input_bytes,
        backoff_base=settings.retry_backoff_seconds,
        backoff_max=settings.retry_backoff_max_seconds,
        concurrency=settings.concurrency,
        prefetch=settings.prefetch,
        prefetch_seconds=settings.prefetch_seconds,
        lookahead=settings.runtime_lookahead,
        wait_time=settings.wait_time_seconds,
        burst_wait_time=min(settings.wait_time_seconds, 1),
        interrupt_grace=settings.interrupt_grace_seconds,
        drain_seconds=settings.drain_seconds,
        runtime_poll_seconds=settings.readiness_interval_seconds,
        cancel_poll_seconds=settings.cancel_poll_seconds,
        delete_delay=settings.delete_batch_seconds,
    )


def _boto_config(settings: AgentSettings) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=settings.wait_time_seconds + 15,  # above the long poll
        max_pool_connections=32,
        tcp_keepalive=True,
    )


async def run_agent(
    settings: AgentSettings, *, burst: bool = False, health: HealthState | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or, with ``burst``, until the queue is empty); the exit code."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    provider = configure_observability(settings, secret)
    health = health or HealthState()
    metrics = PrometheusMetrics(settings.runtime_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker: Worker | None = None

    def on_signal(signame: str) -> None:
        _log.info("signal_received", signal=signame)
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
            worker_adapters = aws_adapters(settings, clients)
            worker = build_worker(
                settings,
                clients=clients,
                aws=worker_adapters,
                runtime=runtime,
                metrics=metrics,
                secret=secret,
            )
            if secret is None:
                _log.warning("webhooks_unsigned", reason="SDQ_WEBHOOK_SECRET is not set")
            _log.info(
                "agent_starting",
                runtime_type=runtime.kind,
                queue=settings.queue_url,
                concurrency=settings.concurrency,
                prefetch=settings.prefetch,
                burst=burst,
            )
            await check_aws(worker_adapters, settings)
            ready = await wait_for_runtime(
                runtime,
                stop,
                interval=settings.readiness_interval_seconds,
                give_up_after=settings.readiness_timeout_seconds,
            )
            if not ready:
                if stop.is_set():
                    _finish_drain(settings, health)
                    return 0
                _log.error("runtime_never_ready", timeout_s=settings.readiness_timeout_seconds)
                return 1
            await runtime.startup_check()
            if stop.is_set():
                worker.stop()
            health.ready = True
            await worker.run(burst=burst)
    except StartupError as exc:
        _log.error("startup_check_failed", error=str(exc))
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
    # Download links must be SigV4 (botocore presigns S3 with legacy SigV2 unless told, and S3
    # refuses SigV2 for SSE-KMS objects); S3's own calls are SigV4 already.
    extra = {"s3": {"config": _boto_config(settings).merge(Config(signature_version="s3v4"))}}
    aws = {
        name: await stack.enter_async_context(session.client(name, **kwargs | extra.get(name, {})))
        for name in ("sqs", "s3", "sns", "dynamodb")
    }
    to_runtime = await stack.enter_async_context(runtime_session())
    to_users = await stack.enter_async_context(
        safe_session(settings.url_allowlist, connect_timeout=settings.input_connect_timeout_seconds)
    )
    return _Clients(**aws, to_runtime=to_runtime, to_users=to_users)


@dataclass(frozen=True)
class _AwsAdapters:
    queue: SqsQueue
    store: S3Store
    publisher: SnsPublisher
    status: DynamoStatusStore


def aws_adapters(settings: AgentSettings, clients: _Clients) -> _AwsAdapters:
    return _AwsAdapters(
        queue=SqsQueue(clients.sqs, settings.queue_url),
        store=S3Store(clients.s3, part_size=settings.upload_part_mib * 1024 * 1024),
        publisher=SnsPublisher(clients.sns, settings.result_topic_arn),
        status=DynamoStatusStore(clients.dynamodb, settings.status_table),
    )


def build_worker(
    settings: AgentSettings,
    *,
    clients: _Clients,
    aws: _AwsAdapters,
    runtime: Runtime,
    metrics: PrometheusMetrics,
    secret: str | None,
) -> Worker:
    return Worker(
        worker_config(settings),
        queue=aws.queue,
        store=aws.store,
        publisher=aws.publisher,
        status=aws.status,
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
        links=S3LinkSigner(clients.s3),
    )


async def check_aws(aws: _AwsAdapters, settings: AgentSettings) -> None:
    """Start-up check of the queue (readable; redrive matches SDQ_MAX_RECEIVE_COUNT) that also
    warms the clients (endpoints, connections), so the first task pays no set-up cost."""
    queue_max = await aws.queue.redrive_max_receive_count()
    if queue_max is None:
        _log.warning("queue_without_dead_letter_queue", consequence="poison messages cycle")
    elif queue_max != settings.max_receive_count:
        _log.warning(
            "max_receive_count_mismatch",
            queue_max_receive_count=queue_max,
            agent_max_receive_count=settings.max_receive_count,
        )
    await aws.status.warm_up()
    await aws.store.warm_up(settings.output_bucket)


def configure_observability(settings: AgentSettings, secret: str | None) -> TracerProvider | None:
    """Logs (the webhook secret scrubbed wherever it appears) and traces (aiobotocore calls
    traced); the tracer provider to flush on exit, or None when tracing is off."""
    configure_logging(settings.log_level, secrets=[secret] if secret else [])
    structlog.contextvars.bind_contextvars(runtime=settings.runtime_name)
    provider = configure_tracing(
        SERVICE_NAME,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        trace_dir=settings.trace_dir,
        resource={"sdq.runtime": settings.runtime_name},
    )
    if provider is not None:
        AioBotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider


def _finish_drain(settings: AgentSettings, health: HealthState) -> None:
    health.ready = False
    health.drained = True
    if settings.drain_file is not None:
        settings.drain_file.parent.mkdir(parents=True, exist_ok=True)
        settings.drain_file.write_text("drained\n", encoding="utf-8")
    _log.info("drained", drain_file=str(settings.drain_file) if settings.drain_file else None)
