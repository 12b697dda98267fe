"""The whole of sdq on one machine: moto server, provisioned resources, one runtime emulator and
one queue agent per configured runtime, and the API front door on 127.0.0.1.

No GPU, Docker or AWS account. Any runtime can point at a real SD WebUI / ComfyUI URL instead
of the emulator (``runtime_urls``).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from aiohttp import web

from sdq_api_validator.app import SERVICE_NAME as API_SERVICE_NAME
from sdq_api_validator.app import build_api
from sdq_api_validator.settings import Settings
from sdq_contracts.config import DeploymentConfig, RuntimeType
from sdq_local.front_door import FrontDoor
from sdq_local.model_sync_local import (
    build_local_model_sync,
    provision_model_events,
    run_local_model_sync,
)
from sdq_local.processes import ManagedProcess, python_module
from sdq_local.provision import Provisioned, observe_topic, provision
from sdq_observability.logs import configure_logging
from sdq_observability.tracing import configure_tracing
from sdq_runtime_emulator.harness import free_port

HOST = "127.0.0.1"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sdq-local",
    "AWS_SECRET_ACCESS_KEY": "sdq-local",
}


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path = Path(".local")
    api_key: str | None = None
    # runtime name → URL of a real SD WebUI / ComfyUI to use instead of the emulator
    runtime_urls: Mapping[str, str] = field(default_factory=dict)
    # runtime name → base directory (input/, output/) of a real ComfyUI given in runtime_urls,
    # as this machine sees it: the agent removes each task's files there
    runtime_data_dirs: Mapping[str, str] = field(default_factory=dict)
    emulator_latency_s: float = 0.5
    start_timeout_s: float = 60.0


@dataclass(frozen=True)
class StackInfo:
    api_url: str
    api_key: str
    aws_endpoint: str
    region: str
    resources: Provisioned
    results_queue_url: str
    runtime_urls: dict[str, str]
    log_dir: Path
    # The local "GPU node": its model cache, mirrored from the model bucket by the node script.
    node_models_dir: Path


class LocalStack:
    def __init__(self, cfg: DeploymentConfig, options: StackOptions | None = None) -> None:
        self.cfg = cfg
        self.options = options or StackOptions()
        self._processes: list[ManagedProcess] = []
        self._runner: web.AppRunner | None = None
        self._model_sync_stop = threading.Event()
        self._model_sync: threading.Thread | None = None
        self.info: StackInfo | None = None

    @property
    def log_dir(self) -> Path:
        return self.options.state_dir / "logs"

    @property
    def node_models_dir(self) -> Path:
        return (self.options.state_dir / "node" / "models").resolve()

    def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], ready: str | None
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log", env, ready)
        proc.start()
        self._processes.append(proc)
        return proc

    async def start(self) -> StackInfo:
        """Start everything and wait until every part answers; on failure stop what started."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    def _configure_in_process_logs(self) -> None:
        """The API handler and model sync run inside this process: their JSON logs go to
        .local/logs/local-stack.log, their spans to .local/traces/ (like every child's)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Open for the life of the process, like stdout.
        configure_logging(
            "INFO", stream=(self.log_dir / "local-stack.log").open("a", encoding="utf-8")
        )
        configure_tracing(
            API_SERVICE_NAME, trace_dir=str(self.trace_dir), record_without_export=True
        )

    @property
    def trace_dir(self) -> Path:
        return (self.options.state_dir / "traces").resolve()

    async def _start(self) -> StackInfo:
        self._configure_in_process_logs()
        aws_port = free_port()
        aws_endpoint = f"http://{HOST}:{aws_port}"
        aws_env = {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_REGION": self.cfg.region,
            "AWS_DEFAULT_REGION": self.cfg.region,
        }
        timeout = self.options.start_timeout_s
        async with aiohttp.ClientSession() as http:
            moto = self._spawn(
                "aws-emulator",
                python_module("sdq_local.aws_emulator", "-H", HOST, "-p", str(aws_port)),
                {},
                f"{aws_endpoint}/moto-api/data.json",
            )
            await moto.wait_ready(timeout, http)
            resources = await asyncio.to_thread(
                provision, self.cfg, endpoint_url=aws_endpoint, session=self._session()
            )
            results_queue = await asyncio.to_thread(self._results_queue, resources, aws_endpoint)
            await asyncio.to_thread(self._start_model_sync, resources, aws_endpoint)

            runtime_urls: dict[str, str] = {}
            for runtime in self.cfg.runtimes:
                if runtime.name in self.options.runtime_urls:
                    runtime_urls[runtime.name] = self.options.runtime_urls[runtime.name].rstrip("/")
                    continue
                port = free_port()
                runtime_urls[runtime.name] = f"http://{HOST}:{port}"
                probe = {
                    RuntimeType.COMFYUI: "/system_stats",
                    RuntimeType.INVOKEAI: "/api/v1/app/version",
                }.get(runtime.type, "/sdapi/v1/memory")
                emulator = self._spawn(
                    f"runtime-emulator-{runtime.name}",
                    python_module(
                        "sdq_runtime_emulator",
                        "--host",
                        HOST,
                        "--port",
                        str(port),
                        "--generation-latency-s",
                        str(self.options.emulator_latency_s),
                        "--models-dir",
                        str(self.node_models_dir),
                        "--data-dir",
                        str(self._emulator_data_dir(runtime.name)),
                    ),
                    {},
                    f"http://{HOST}:{port}{probe}",
                )
                await emulator.wait_ready(timeout, http)

            api_key = self.options.api_key or f"sdq-local-{secrets.token_hex(12)}"
            api_url = await self._start_front_door(resources, aws_endpoint, api_key)

            agents = []
            for runtime in self.cfg.runtimes:
                http_port = free_port()
                env = {
                    **aws_env,
                    "SDQ_RUNTIME_NAME": runtime.name,
                    "SDQ_RUNTIME_TYPE": runtime.type.value,
                    "SDQ_RUNTIME_URL": runtime_urls[runtime.name],
                    "SDQ_STATIC_MODEL": runtime.model or "",
                    "SDQ_DYNAMIC_MODEL": "true" if runtime.dynamic_model else "false",
                    # The runtime runs on this machine: it sees the node cache where it is.
                    "SDQ_RUNTIME_MODELS_DIR": str(self.node_models_dir),
                    "SDQ_QUEUE_URL": resources.queue_urls[runtime.name],
                    "SDQ_RESULT_TOPIC_ARN": resources.output_topic_arn,
                    "SDQ_STATUS_TABLE": resources.status_table,
                    "SDQ_OUTPUT_BUCKET": resources.output_bucket,
                    "SDQ_MODEL_BUCKET": resources.model_bucket,
                    "SDQ_TASK_TIMEOUT_SECONDS": str(runtime.task_timeout_seconds),
                    "SDQ_RETRY_ON_DEADLINE": str(runtime.retry_on_deadline).lower(),
                    "SDQ_STATUS_TTL_DAYS": str(self.cfg.api.status_ttl_days),
                    "SDQ_DOWNLOAD_LINK_SECONDS": str(self.cfg.downloads.link_seconds),
                    "SDQ_MAX_RECEIVE_COUNT": str(runtime.max_receive_count),
                    "SDQ_HTTP_PORT": str(http_port),
                    "SDQ_DRAIN_SECONDS": "20",
                    "SDQ_URL_ALLOWLIST": "127.0.0.1/32",
                    "SDQ_WEBHOOK_SECRET": f"sdq-local-webhook-{secrets.token_hex(8)}",
                    "SDQ_TRACE_DIR": str(self.trace_dir),
                    # Short long-polls: the agents stop within ~2 s when the stack goes down.
                    "SDQ_WAIT_TIME_SECONDS": "2",
                    "SDQ_CANCEL_POLL_SECONDS": "1",
                }
                if runtime.type is RuntimeType.COMFYUI:
                    data_dir = self.options.runtime_data_dirs.get(runtime.name)
                    if data_dir is None and runtime.name not in self.options.runtime_urls:
                        data_dir = str(self._emulator_data_dir(runtime.name).resolve())
                    if data_dir is not None:
                        env["SDQ_COMFYUI_DATA_DIR"] = data_dir
                agents.append(
                    self._spawn(
                        f"queue-agent-{runtime.name}",
                        python_module("sdq_queue_agent"),
                        env,
                        f"http://{HOST}:{http_port}/readyz",
                    )
                )
            await asyncio.gather(*(a.wait_ready(timeout, http) for a in agents))

        self.info = StackInfo(
            api_url=api_url,
            api_key=api_key,
            aws_endpoint=aws_endpoint,
            region=self.cfg.region,
            resources=resources,
            results_queue_url=results_queue,
            runtime_urls=runtime_urls,
            log_dir=self.log_dir,
            node_models_dir=self.node_models_dir,
        )
        return self.info

    def _emulator_data_dir(self, runtime: str) -> Path:
        return self.options.state_dir / "runtime" / runtime

    def _session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.cfg.region,
        )

    def _start_model_sync(self, resources: Provisioned, endpoint: str) -> None:
        """Model bucket events → the model_sync handler → the node script on the local node dir."""
        session = self._session()
        sqs = session.client("sqs", endpoint_url=endpoint)
        queue_url = provision_model_events(
            session.client("s3", endpoint_url=endpoint),
            sqs,
            resources.model_bucket,
            queue_name=f"{self.cfg.stack_name}-model-events",
        )
        self.node_models_dir.mkdir(parents=True, exist_ok=True)
        sync = build_local_model_sync(
            bucket=resources.model_bucket,
            node_dir=self.node_models_dir,
            region=self.cfg.region,
            endpoint_url=endpoint,
            extra_env=LOCAL_CREDENTIALS,
        )
        self._model_sync_stop.clear()
        self._model_sync = threading.Thread(
            target=run_local_model_sync,
            args=(sqs, sync, queue_url, self._model_sync_stop),
            name="sdq-local-model-sync",
            daemon=True,
        )
        self._model_sync.start()

    def _results_queue(self, resources: Provisioned, endpoint: str) -> str:
        """A queue subscribed to the output topic, so the local user sees every notification."""
        session = self._session()
        return observe_topic(
            session.client("sqs", endpoint_url=endpoint),
            session.client("sns", endpoint_url=endpoint),
            resources.output_topic_arn,
            f"{self.cfg.stack_name}-local-results",
        )

    async def _start_front_door(self, resources: Provisioned, endpoint: str, api_key: str) -> str:
        api = build_api(
            Settings(
                runtimes=self.cfg.runtimes,
                input_topic_arn=resources.input_topic_arn,
                status_table=resources.status_table,
                output_bucket=resources.output_bucket,
                max_body_bytes=self.cfg.api.max_body_bytes,
                claim_check_bytes=self.cfg.api.claim_check_bytes,
                status_ttl_days=self.cfg.api.status_ttl_days,
                download_link_seconds=self.cfg.downloads.link_seconds,
            ),
            session=self._session(),
            endpoint_url=endpoint,
        )
        door = FrontDoor(api, [api_key], self.cfg.api.throttle, self.cfg.api.max_body_bytes)
        self._runner = web.AppRunner(door.app(), access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, HOST, port).start()
        return f"http://{HOST}:{port}"

    async def stop(self) -> None:
        """Agents first (they drain), then runtimes, then the AWS emulator."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._model_sync is not None:
            self._model_sync_stop.set()
            await asyncio.to_thread(self._model_sync.join, 15)
            self._model_sync = None

        def tier(proc: ManagedProcess) -> int:
            if proc.name.startswith("queue-agent"):
                return 0
            return 2 if proc.name == "aws-emulator" else 1

        for level in (0, 1, 2):
            group = [p for p in self._processes if tier(p) == level]
            grace = 25.0 if level == 0 else 5.0
            await asyncio.gather(*(asyncio.to_thread(p.stop, grace) for p in group))
        self._processes.clear()

    def describe(self) -> dict[str, Any]:
        if self.info is None:
            return {}
        return {
            "api_url": self.info.api_url,
            "api_key": self.info.api_key,
            "aws_endpoint": self.info.aws_endpoint,
            "runtimes": dict(self.info.runtime_urls),
            "logs": str(self.info.log_dir),
        }
