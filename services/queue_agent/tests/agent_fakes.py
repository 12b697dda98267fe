"""In-memory fakes of the agent's ports (unit layer) and shared helpers (imported by tests)."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sdq_contracts import status
from sdq_contracts.messages import (
    OutputObject,
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
    DeleteRefusal,
    FetchedInput,
    NewRow,
    OutputFile,
    ReceivedMessage,
    Renewal,
    RuntimeRequest,
    RuntimeResult,
    refused_claim,
)
from sdq_queue_agent.domain.worker import Worker, WorkerConfig
from sdq_queue_agent.errors import AwsError, InputRefusedError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class LoopClock:
    """The worker's clock read from the event loop, so :func:`virtual_time` governs it."""

    def __init__(self) -> None:
        self._wall = datetime.now(UTC)
        self._start = _loop_time()

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=_loop_time() - self._start)

    def monotonic(self) -> float:
        return _loop_time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """Run the current event loop on virtual time: whenever every task waits for a timer, the
    loop jumps to that timer instead of sleeping. Tests of the worker (heartbeats, deadlines,
    backoffs, drains) then take milliseconds; only in-memory fakes may run under it (no real
    I/O waits)."""
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]
    real_select, real_time = selector.select, loop.time
    skipped = 0.0

    def select(timeout: float | None = None) -> Any:
        nonlocal skipped
        events = real_select(0)
        if events or timeout is None or timeout <= 0:
            return events if events or timeout is not None else real_select(timeout)
        skipped += timeout
        return []

    selector.select = select
    loop.time = lambda: real_time() + skipped  # type: ignore[method-assign]
    try:
        yield
    finally:
        selector.select = real_select
        loop.time = real_time  # type: ignore[method-assign]


@dataclass
class _Msg:
    id: str
    body: str
    visible_at: float = 0.0
    receive_count: int = 0
    handle: str = ""
    copy: int = 0  # >0: a second stored copy of message ``id`` (SQS at-least-once delivery)


class FakeQueue:
    """SQS semantics that matter: visibility, receive counts, stale receipt handles, redrive."""

    def __init__(self, max_receive_count: int = 3) -> None:
        self.messages: dict[str, _Msg] = {}
        self.dlq: list[str] = []
        self.deleted: list[str] = []
        self.visibility_calls: list[tuple[str, int]] = []
        self.extends = 0
        self.receives: list[int] = []  # messages returned by each receive that got some
        self.delete_calls: list[int] = []  # entries per DeleteMessage(Batch) call
        # Per message id: refusals the next batch deletes answer for it, one per attempt.
        self.delete_refusals: dict[str, list[DeleteRefusal]] = {}
        self.max_receive_count = max_receive_count
        self._ids = itertools.count(1)
        self._copies = itertools.count(1)
        self.bodies: dict[str, str] = {}  # every message ever sent, by MessageId

    def send(self, body: str | dict[str, Any]) -> str:
        mid = f"m{next(self._ids)}"
        self.bodies[mid] = body if isinstance(body, str) else json.dumps(body)
        self.messages[mid] = _Msg(mid, self.bodies[mid])
        return mid

    def duplicate(self, mid: str) -> None:
        """SQS delivers a second copy of message ``mid``: the same MessageId and body, its own
        receipt handles, deleted on its own (the original's delete does not remove it)."""
        n = next(self._copies)
        self.messages[f"{mid}~{n}"] = _Msg(mid, self.bodies[mid], copy=n)

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]:
        deadline = _loop_time() + wait_seconds
        await asyncio.sleep(0)
        while True:
            now = _loop_time()
            out: list[ReceivedMessage] = []
            for msg in list(self.messages.values()):
                if len(out) >= max_messages:
                    break
                if msg.visible_at > now:
                    continue
                if msg.receive_count >= self.max_receive_count:
                    self.messages = {k: m for k, m in self.messages.items() if m is not msg}
                    self.dlq.append(msg.body)
                    continue
                msg.receive_count += 1
                msg.handle = f"{msg.id}~{msg.copy}#{msg.receive_count}"
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
                if out:
                    self.receives.append(len(out))
                return out
            await asyncio.sleep(0.01)

    def _current(self, handle: str) -> _Msg:
        for msg in self.messages.values():
            if msg.handle == handle:
                return msg
        raise AwsError("ReceiptHandleIsInvalid")

    async def delete(self, message: ReceivedMessage) -> None:
        self.delete_calls.append(1)
        self._delete(message)

    def _delete(self, message: ReceivedMessage) -> None:
        msg = self._current(message.receipt_handle)
        self.messages = {k: m for k, m in self.messages.items() if m is not msg}
        self.deleted.append(msg.id)

    async def delete_batch(self, messages: Sequence[ReceivedMessage]) -> dict[str, DeleteRefusal]:
        assert 0 < len(messages) <= 10, "DeleteMessageBatch takes 1 to 10 entries"
        self.delete_calls.append(len(messages))
        refused: dict[str, DeleteRefusal] = {}
        for message in messages:
            planned = self.delete_refusals.get(message.message_id)
            if planned:
                refused[message.receipt_handle] = planned.pop(0)
                continue
            try:
                self._delete(message)
            except AwsError:
                refused[message.receipt_handle] = DeleteRefusal("ReceiptHandleIsInvalid", False)
        return refused

    async def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self._current(message.receipt_handle).visible_at = _loop_time() + seconds
        self.visibility_calls.append((message.message_id, seconds))

    async def extend(self, messages: Sequence[ReceivedMessage], seconds: int) -> None:
        for message in messages:
            self._current(message.receipt_handle).visible_at = _loop_time() + seconds
            self.extends += 1

    async def is_empty(self) -> bool:
        return not self.messages


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.streamed: list[str] = []

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = (data, content_type)

    async def put_stream(
        self, bucket: str, key: str, chunks: AsyncGenerator[bytes, None], content_type: str
    ) -> int:
        data = b"".join([chunk async for chunk in chunks])
        self.streamed.append(key)
        await self.put(bucket, key, data, content_type)
        return len(data)

    async def get(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        if (bucket, key) not in self.objects:
            raise InputRefusedError(f"s3://{bucket}/{key} does not exist")
        return self.objects[(bucket, key)]


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[ResultNotification] = []
        self.fail_next = 0
        self.after_publish: Callable[[ResultNotification], None] | None = None

    async def publish(self, notification: ResultNotification) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise AwsError("Publish failed: InternalError")
        self.published.append(notification)
        if self.after_publish is not None:
            self.after_publish(notification)


class FakeStatus:
    """The status table in memory: each write is the transition of :mod:`sdq_contracts.status`
    (the shared scenario suite runs the same cases against DynamoDB)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, list[str]] = {}  # stages written by the heartbeat's renews
        self.claims: list[tuple[str, str]] = []  # (task id, outcome)
        self.calls: collections.Counter[str] = collections.Counter()  # by method
        self.mark_batches: list[list[tuple[str, str]]] = []  # (task id, MessageId) per write
        self.fail_marks: Exception | None = None  # raised by mark_announced when set

    def seed(self, task_id: str, **fields: Any) -> None:
        self.rows[task_id] = {
            "id": task_id,
            "runtime": "sdruntime",
            "tasktype": "text-to-image",
            "output_location": f"s3://outputs/out/{task_id}",
            "created_at": "2026-01-01T00:00:00+00:00",
            "expires_at": 1_900_000_000,
            "status": TaskState.QUEUED.value,
            "attempts": 0,
            **fields,
        }

    def _apply(self, task_id: str, new: dict[str, Any] | None) -> bool:
        if new is None:
            return False
        self.rows[task_id] = new
        return True

    async def claim(
        self, task_id: str, new_row: NewRow, now: datetime, holder: str, lease_until: int
    ) -> Claim:
        self.calls["claim"] += 1
        item = self.rows.get(task_id)
        stamp = now.isoformat()
        new = status.claim(
            item,
            holder=holder,
            now=int(now.timestamp()),
            lease_until=lease_until,
            stamp=stamp,
            defaults=new_row.item(task_id, stamp),
        )
        if self._apply(task_id, new):
            self.claims.append((task_id, "claimed"))
            return Claim(ClaimOutcome.CLAIMED)
        claim = refused_claim(self.rows.get(task_id), holder, int(now.timestamp()))
        self.claims.append((task_id, claim.outcome.value))
        return claim

    async def renew(
        self, task_id: str, holder: str, lease_until: int, stage: str, now: datetime
    ) -> Renewal:
        self.calls["renew"] += 1
        new = status.renew(
            self.rows.get(task_id),
            holder=holder,
            lease_until=lease_until,
            stage=stage,
            stamp=now.isoformat(),
        )
        if not self._apply(task_id, new) or new is None:
            return Renewal(held=False)
        self.stages.setdefault(task_id, []).append(stage)
        return Renewal(held=True, cancel_requested=new.get("cancel_requested") is True)

    async def release(self, task_id: str, holder: str, now: datetime) -> None:
        self.calls["release"] += 1
        new = status.release(self.rows.get(task_id), holder=holder, stamp=now.isoformat())
        self._apply(task_id, new)

    async def wait_to_retry(
        self, task_id: str, holder: str, error: TaskError, retry_at: datetime, now: datetime
    ) -> None:
        self.calls["wait_to_retry"] += 1
        new = status.wait_to_retry(
            self.rows.get(task_id),
            holder=holder,
            error=error.model_dump(mode="json"),
            retry_at=retry_at.isoformat(),
            stamp=now.isoformat(),
        )
        self._apply(task_id, new)

    async def cancel_requested(self, task_id: str) -> bool:
        self.calls["cancel_requested"] += 1
        return bool(self.rows.get(task_id, {}).get("cancel_requested"))

    async def complete(
        self,
        task_id: str,
        holder: str,
        outputs: list[str],
        now: datetime,
        *,
        settled_by: str,
        files: Sequence[OutputObject] = (),
    ) -> bool:
        self.calls["complete"] += 1
        new = status.complete(
            self.rows.get(task_id),
            holder=holder,
            outputs=outputs,
            stamp=now.isoformat(),
            settled_by=settled_by,
            files=[f.model_dump(mode="json", exclude_none=True) for f in files],
        )
        return self._apply(task_id, new)

    async def fail(
        self,
        task_id: str,
        error: TaskError,
        now: datetime,
        new_row: NewRow | None,
        settled_by: str,
    ) -> bool:
        self.calls["fail"] += 1
        stamp = now.isoformat()
        new = status.fail(
            self.rows.get(task_id),
            error=error.model_dump(mode="json"),
            stamp=stamp,
            defaults=new_row.item(task_id, stamp) if new_row else None,
            settled_by=settled_by,
        )
        return self._apply(task_id, new)

    async def cancelled(self, task_id: str, now: datetime, settled_by: str) -> bool:
        self.calls["cancelled"] += 1
        new = status.cancelled(self.rows.get(task_id), stamp=now.isoformat(), settled_by=settled_by)
        return self._apply(task_id, new)

    async def adopt(self, task_id: str, settled_by: str, now: datetime | None = None) -> bool:
        self.calls["adopt"] += 1
        stamp = None if now is None else now.isoformat()
        return self._apply(
            task_id, status.adopt(self.rows.get(task_id), settled_by=settled_by, stamp=stamp)
        )

    async def mark_announced(self, marks: Sequence[tuple[str, str]]) -> set[str]:
        """One transaction: every mark whose condition holds is written (as the adapter's
        retry without the failed items ends)."""
        self.calls["mark_announced"] += 1
        self.mark_batches.append(list(marks))
        if self.fail_marks is not None:
            raise self.fail_marks
        return {
            task_id
            for task_id, mid in marks
            if self._apply(task_id, status.mark_announced(self.rows.get(task_id), settled_by=mid))
        }

    def record(self, task_id: str) -> StatusRecord:
        return StatusRecord.from_item(self.rows[task_id])


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
    queues_requests: bool = False
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

    # queues_requests: like SD WebUI, requests wait on one FIFO lock, and an interrupt stops
    # whatever generates when it lands (a generation that starts clears it), after
    # ``interrupt_lands_after`` seconds; an interrupted default generation answers early with
    # ``"info": "interrupted"``.
    interrupt_lands_after: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        if not self.queues_requests:
            return await self._generate(request)
        self.events.append(("sent", request.task_id))
        async with self._lock:
            return await self._generate(request)

    async def _generate(self, request: RuntimeRequest) -> RuntimeResult:
        assert not self.busy, "two generations at once"
        self.busy = True
        self._stop = asyncio.Event()
        self.runs[request.task_id] = self.runs.get(request.task_id, 0) + 1
        self.events.append(("run", request.task_id))
        try:
            behaviour = self.behaviours.get(request.task_id)
            if behaviour is not None:
                result = await behaviour(request)
                if isinstance(result, RuntimeResult):
                    return result
            info = "{}"
            if self.queues_requests:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.generation_s)
                    info = "interrupted"
            else:
                await asyncio.sleep(self.generation_s)
            n = int(request.body.get("batch_size", 1))
            return RuntimeResult(
                files=tuple(OutputFile(PNG, "image/png", "png") for _ in range(n)),
                response={"images": [f"<output {i}>" for i in range(1, n + 1)], "info": info},
            )
        finally:
            self.busy = False
            self.events.append(("done", request.task_id))

    async def interrupt(self, task_id: str) -> None:
        self.interrupted.append(task_id)
        if self.interrupt_lands_after:
            await asyncio.sleep(self.interrupt_lands_after)
        if self.busy:
            self._stop.set()


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
            clock=LoopClock(),
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
