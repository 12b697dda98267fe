"""In-memory fakes of the agent's ports (unit layer) and shared helpers (imported by tests)."""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sdq_contracts.messages import (
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_queue_agent.domain import sdwebui_body
from sdq_queue_agent.domain.inputs import substitute
from sdq_queue_agent.domain.model import (
    Claim,
    ClaimOutcome,
    FetchedInput,
    OutputFile,
    ReceivedMessage,
    RuntimeRequest,
    RuntimeResult,
)
from sdq_queue_agent.domain.worker import Worker, WorkerConfig
from sdq_queue_agent.errors import AwsError, InputRefusedError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@dataclass
class _Msg:
    id: str
    body: str
    visible_at: float = 0.0
    receive_count: int = 0
    handle: str = ""


class FakeQueue:
    """SQS semantics that matter: visibility, receive counts, stale receipt handles, redrive."""

    def __init__(self, max_receive_count: int = 3) -> None:
        self.messages: dict[str, _Msg] = {}
        self.dlq: list[str] = []
        self.deleted: list[str] = []
        self.visibility_calls: list[tuple[str, int]] = []
        self.extends = 0
        self.max_receive_count = max_receive_count
        self._ids = itertools.count(1)

    def send(self, body: str | dict[str, Any]) -> str:
        mid = f"m{next(self._ids)}"
        self.messages[mid] = _Msg(mid, body if isinstance(body, str) else json.dumps(body))
        return mid

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + wait_seconds
        await asyncio.sleep(0)
        while True:
            now = time.monotonic()
            out: list[ReceivedMessage] = []
            for msg in list(self.messages.values()):
                if len(out) >= max_messages:
                    break
                if msg.visible_at > now:
                    continue
                if msg.receive_count >= self.max_receive_count:
                    del self.messages[msg.id]
                    self.dlq.append(msg.body)
                    continue
                msg.receive_count += 1
                msg.handle = f"{msg.id}#{msg.receive_count}"
                msg.visible_at = now + visibility
                out.append(
                    ReceivedMessage(
                        msg.id,
                        msg.handle,
                        msg.body,
                        msg.receive_count,
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                    )
                )
            if out or now >= deadline:
                return out
            await asyncio.sleep(0.01)

    def _current(self, handle: str) -> _Msg:
        for msg in self.messages.values():
            if msg.handle == handle:
                return msg
        raise AwsError("ReceiptHandleIsInvalid")

    async def delete(self, message: ReceivedMessage) -> None:
        msg = self._current(message.receipt_handle)
        del self.messages[msg.id]
        self.deleted.append(msg.id)

    async def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self._current(message.receipt_handle).visible_at = time.monotonic() + seconds
        self.visibility_calls.append((message.message_id, seconds))

    async def extend(self, messages: Sequence[ReceivedMessage], seconds: int) -> None:
        for message in messages:
            self._current(message.receipt_handle).visible_at = time.monotonic() + seconds
            self.extends += 1

    async def is_empty(self) -> bool:
        return not self.messages


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = (data, content_type)

    async def get(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        if (bucket, key) not in self.objects:
            raise InputRefusedError(f"s3://{bucket}/{key} does not exist")
        return self.objects[(bucket, key)]


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[ResultNotification] = []
        self.fail_next = 0

    async def publish(self, notification: ResultNotification) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise AwsError("Publish failed: InternalError")
        self.published.append(notification)


class FakeStatus:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def seed(self, task_id: str, **fields: Any) -> None:
        self.rows[task_id] = {"status": TaskState.QUEUED, "attempts": 0, **fields}

    async def claim(self, task: TaskMessage, output_location: str, now: datetime) -> Claim:
        row = self.rows.setdefault(task.id, {"status": TaskState.QUEUED, "attempts": 0})
        error = row.get("error")
        if row["status"] in (TaskState.COMPLETED, TaskState.CANCELLED) or (
            row["status"] is TaskState.FAILED and error is not None and error.permanent
        ):
            record = StatusRecord(
                id=task.id,
                runtime=task.runtime,
                tasktype=task.tasktype,
                status=row["status"],
                output_location=output_location,
                outputs=row.get("outputs", []),
                error=error,
            )
            return Claim(
                ClaimOutcome.ALREADY_DONE, record, unannounced=row.get("announced") is False
            )
        if row.get("cancel_requested"):
            return Claim(ClaimOutcome.CANCEL_REQUESTED)
        row.update(
            status=TaskState.RUNNING, attempts=row["attempts"] + 1, started_at=now, error=None
        )
        return Claim(ClaimOutcome.CLAIMED)

    async def cancel_requested(self, task_id: str) -> bool:
        return bool(self.rows.get(task_id, {}).get("cancel_requested"))

    async def complete(self, task_id: str, outputs: list[str], now: datetime) -> bool:
        row = self.rows[task_id]
        if row["status"] is TaskState.CANCELLED:
            return False
        row.update(status=TaskState.COMPLETED, outputs=outputs, finished_at=now, announced=False)
        return True

    async def fail(
        self, task: TaskMessage | None, task_id: str, error: TaskError, now: datetime
    ) -> None:
        if task is None and task_id not in self.rows:
            return
        self.rows.setdefault(task_id, {"attempts": 0}).update(
            status=TaskState.FAILED, error=error, announced=False
        )

    async def cancelled(self, task_id: str, now: datetime) -> None:
        self.rows[task_id].update(status=TaskState.CANCELLED, announced=False)

    async def stage(self, task_id: str, stage: str, now: datetime) -> None:
        row = self.rows.get(task_id)
        if row is not None and row["status"] is TaskState.RUNNING:
            row.setdefault("stages", []).append(stage)

    async def announced(self, task_id: str) -> None:
        if task_id in self.rows:
            self.rows[task_id]["announced"] = True


class FakeFetcher:
    def __init__(self) -> None:
        self.urls: dict[str, tuple[bytes, str]] = {}
        self.fetched: list[str] = []

    async def fetch_url(self, url: str) -> tuple[bytes, str]:
        self.fetched.append(url)
        if url not in self.urls:
            raise InputRefusedError(f"{url}: HTTP 404")
        return self.urls[url]


class FakeWebhooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def deliver(self, url: str, body: bytes, task_id: str) -> bool:
        self.calls.append((url, body))
        return True


Behaviour = Callable[[RuntimeRequest], Any]


@dataclass
class FakeRuntime:
    """SD WebUI-shaped fake: ``behaviours[task_id]`` (async callable) decides what a run does."""

    kind: str = "fake"
    generation_s: float = 0.0
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)
    busy: bool = False

    async def ping(self) -> None:
        return None

    async def startup_check(self) -> None:
        return None

    def prepare(self, task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
        self.events.append(("prepare", task.id))
        return sdwebui_body.shape(task, content, dynamic_model=False)

    async def stage_inputs(
        self, request: RuntimeRequest, inputs: Sequence[FetchedInput]
    ) -> RuntimeRequest:
        values = {i.ref.path: base64.b64encode(i.data).decode() for i in inputs}
        return RuntimeRequest(request.task_id, request.tasktype, substitute(request.body, values))

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        assert not self.busy, "two generations at once"
        self.busy = True
        self.runs[request.task_id] = self.runs.get(request.task_id, 0) + 1
        self.events.append(("run", request.task_id))
        try:
            behaviour = self.behaviours.get(request.task_id)
            if behaviour is not None:
                result = await behaviour(request)
                if isinstance(result, RuntimeResult):
                    return result
            await asyncio.sleep(self.generation_s)
            n = int(request.body.get("batch_size", 1))
            return RuntimeResult(
                files=tuple(OutputFile(PNG, "image/png", "png") for _ in range(n)),
                response={"images": [f"<output {i}>" for i in range(1, n + 1)], "info": "{}"},
            )
        finally:
            self.busy = False
            self.events.append(("done", request.task_id))

    async def interrupt(self, task_id: str) -> None:
        self.interrupted.append(task_id)


def task_body(task_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": task_id,
        "runtime": "sdruntime",
        "tasktype": "text-to-image",
        "prefix": "out",
        "content": {"prompt": "a cat", "batch_size": 1},
    }
    body.update(overrides)
    return TaskMessage.model_validate(body).model_dump(mode="json", exclude_none=True)


class _Value:
    def __init__(self) -> None:
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)

    def observe(self, amount: float) -> None:
        self.values.append(amount)


class FakeMetrics:
    """The metrics port in memory: outcomes counted, stage times and observations listed."""

    def __init__(self) -> None:
        self.in_flight = _Value()
        self.receive_seconds = _Value()
        self.queue_wait_seconds = _Value()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.stages: dict[str, list[float]] = collections.defaultdict(list)
        self.busy_seconds = 0.0

    def outcome(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def stage(self, stage: str, seconds: float) -> None:
        self.stages[stage].append(seconds)

    def busy(self, seconds: float) -> None:
        self.busy_seconds += seconds


@dataclass
class Harness:
    queue: FakeQueue
    store: FakeStore
    publisher: FakePublisher
    status: FakeStatus
    fetcher: FakeFetcher
    webhooks: FakeWebhooks
    runtime: FakeRuntime
    config: WorkerConfig
    metrics: FakeMetrics = field(default_factory=FakeMetrics)

    def worker(self) -> Worker:
        return Worker(
            self.config,
            queue=self.queue,
            store=self.store,
            publisher=self.publisher,
            status=self.status,
            fetcher=self.fetcher,
            webhooks=self.webhooks,
            runtime=self.runtime,
            metrics=self.metrics,
        )

    async def burst(self, timeout: float = 10.0) -> Worker:
        worker = self.worker()
        async with asyncio.timeout(timeout):
            await worker.run(burst=True)
        return worker


def make_harness(**config: Any) -> Harness:
    defaults: dict[str, Any] = {
        "runtime_name": "sdruntime",
        "output_bucket": "outputs",
        "input_buckets": frozenset({"outputs", "models"}),
        "task_timeout": 5.0,
        "visibility": 30,
        "max_receive_count": 3,
        "backoff_base": 0,
        "backoff_max": 0,
        "burst_wait_time": 0,
        "interrupt_grace": 1.0,
        "drain_seconds": 5.0,
    }
    cfg = WorkerConfig(**(defaults | config))
    return Harness(
        FakeQueue(cfg.max_receive_count),
        FakeStore(),
        FakePublisher(),
        FakeStatus(),
        FakeFetcher(),
        FakeWebhooks(),
        FakeRuntime(),
        cfg,
    )
