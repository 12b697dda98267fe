"""The pipelined worker: keeps the runtime busy and every message accounted for.

Stages of one message (each in its own task of one TaskGroup):

1. *prepare* (prefetch): parse, resolve the claim check, claim the status row, fetch inputs and
   stage them on the runtime — while the runtime generates the previous task;
2. *generate*: one runtime call per generator (``concurrency``), with a deadline, cancel and
   shutdown signals that interrupt the runtime; never retried;
3. *finish*: upload outputs, status completed, publish the result, delete the message, then
   the webhook — while the runtime already generates the next task.

Every held message gets a visibility heartbeat until it is deleted or handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.trace import SpanKind

from sdq_contracts.keys import image_key, output_location, parse_s3_uri, response_key
from sdq_contracts.messages import (
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_queue_agent.domain.inputs import check_s3_input, classify, decode_data_uri
from sdq_queue_agent.domain.model import (
    ClaimOutcome,
    FetchedInput,
    InputRef,
    ParsedTask,
    ReceivedMessage,
    RuntimeRequest,
    RuntimeResult,
)
from sdq_queue_agent.domain.parsing import PoisonMessage, parse_task
from sdq_queue_agent.domain.ports import (
    InputFetcher,
    Metrics,
    ObjectStore,
    ResultPublisher,
    Runtime,
    StatusStore,
    TaskQueue,
    WebhookSender,
)
from sdq_queue_agent.domain.readiness import wait_for_runtime
from sdq_queue_agent.domain.ssrf import redact_url
from sdq_queue_agent.errors import (
    DeadlineExceededError,
    InputRefusedError,
    InvalidTaskError,
    PermanentTaskError,
    RuntimeUnavailableError,
    TaskCancelled,
    TaskFailure,
    TaskReleased,
    TransientTaskError,
)

_tracer = trace.get_tracer("sdq_queue_agent")
_xray = AwsXRayPropagator()
TRACE_HEADER = "X-Amzn-Trace-Id"
_log = structlog.get_logger("sdq_queue_agent.worker")
Signal = Literal["deadline", "cancel", "release"]
MAX_CLAIM_CHECK_BYTES = 64 * 1024 * 1024
# How long the agent waits for the runtime to acknowledge an interrupt before moving on.
INTERRUPT_CALL_TIMEOUT = 10.0
EMPTY_POLL_PAUSE = 0.05


@dataclass(frozen=True)
class WorkerConfig:
    runtime_name: str
    output_bucket: str
    input_buckets: frozenset[str]
    task_timeout: float
    visibility: int
    max_receive_count: int
    max_input_bytes: int = 20 * 1024 * 1024
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    concurrency: int = 1
    prefetch: int = 1
    wait_time: int = 20
    burst_wait_time: int = 1
    interrupt_grace: float = 15.0
    drain_seconds: float = 60.0
    # After "runtime unavailable", receive nothing until the runtime answers again.
    runtime_poll_seconds: float = 2.0
    # How often a held task's status row is read for a cancel request (one GetItem each).
    cancel_poll_seconds: float = 5.0

    def backoff(self, receive_count: int) -> int:
        """Visibility for a transient retry: exponential in the receive count, capped."""
        seconds = self.backoff_base * (2 ** max(receive_count - 1, 0))
        return int(min(seconds, self.backoff_max, 43_199))


@dataclass
class _Held:
    """A message the agent is responsible for until it deletes or hands it back."""

    message: ReceivedMessage
    log: Any
    received_wall: datetime
    next_extend: float
    next_cancel_check: float
    # The task's span in the producer's trace (continued from the message's trace header).
    span: trace.Span
    task: TaskMessage | None = None
    generating: bool = False
    signal: Signal | None = None
    signalled: asyncio.Event = field(default_factory=asyncio.Event)

    def raise_signal(self, signal: Signal) -> None:
        if self.signal is None:
            self.signal = signal
            self.signalled.set()

    @property
    def trace_id(self) -> str | None:
        """X-Ray form of this task's trace id (the header's root when tracing is off)."""
        ctx = self.span.get_span_context()
        if not ctx.is_valid:
            return self.message.trace_id
        hexid = format(ctx.trace_id, "032x")
        return f"1-{hexid[:8]}-{hexid[8:]}"

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[trace.Span]:
        """A span for one stage of this task: a child of the current stage when called inside
        one, else of the task's span. AWS calls inside it become its children."""
        current = trace.get_current_span().get_span_context()
        mine = self.span.get_span_context()
        if current.is_valid and current.trace_id == mine.trace_id:
            with _tracer.start_as_current_span(name) as span:
                yield span
            return
        with (
            trace.use_span(self.span, end_on_exit=False),
            _tracer.start_as_current_span(name) as span,
        ):
            yield span

    @contextlib.contextmanager
    def within(self) -> Iterator[None]:
        """Make this task's span current (for work not worth a span of its own)."""
        with trace.use_span(self.span, end_on_exit=False):
            yield


@dataclass
class _Job:
    held: _Held
    parsed: ParsedTask
    request: RuntimeRequest
    timings: dict[str, float]


def _now() -> datetime:
    return datetime.now(UTC)


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        queue: TaskQueue,
        store: ObjectStore,
        publisher: ResultPublisher,
        status: StatusStore,
        fetcher: InputFetcher,
        webhooks: WebhookSender,
        runtime: Runtime,
        metrics: Metrics,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._cfg = config
        self._queue = queue
        self._store = store
        self._publisher = publisher
        self._status = status
        self._fetcher = fetcher
        self._webhooks = webhooks
        self._runtime = runtime
        self._metrics = metrics
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._changed = asyncio.Condition()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._ready: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._generating = 0
        self._unstarted = 0  # received, not yet generating (preparing or ready)
        self._runtime_down = False

    # ----------------------------------------------------------------------- public

    @property
    def holding(self) -> int:
        return len(self._held)

    def stop(self) -> None:
        """Stop receiving and drain (SIGTERM)."""
        self._stop.set()

    async def run(self, *, burst: bool = False) -> None:
        """Work until :meth:`stop` (or, in burst mode, until the queue is empty and idle)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            heartbeat = tg.create_task(self._heartbeat_loop())
            drainer = tg.create_task(self._drain_on_stop())
            generators = [
                tg.create_task(self._generate_loop()) for _ in range(self._cfg.concurrency)
            ]
            try:
                await self._receive_loop(burst)
            finally:
                self._stop.set()
            await drainer
            await asyncio.gather(*generators)
            async with self._changed:
                await self._changed.wait_for(lambda: not self._held)
            heartbeat.cancel()
        self._tg = None
        _log.info("worker stopped", holding=len(self._held))

    # ----------------------------------------------------------------------- receive

    def _capacity(self) -> int:
        idle = self._cfg.concurrency - self._generating
        return self._cfg.prefetch + max(idle, 0) - self._unstarted

    async def _notify(self) -> None:
        self._metrics.in_flight.set(len(self._held))
        async with self._changed:
            self._changed.notify_all()

    async def _receive_loop(self, burst: bool) -> None:
        wait = self._cfg.burst_wait_time if burst else self._cfg.wait_time
        while not self._stop.is_set():
            async with self._changed:
                await self._changed.wait_for(lambda: self._capacity() > 0 or self._stop.is_set())
            if self._stop.is_set():
                return
            if self._runtime_down:
                await self._await_runtime()
                continue
            wanted = min(10, self._capacity())
            started = time.monotonic()
            try:
                messages = await self._queue.receive(wanted, wait, self._cfg.visibility)
            except TransientTaskError as exc:
                _log.warning("receive failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            self._metrics.receive_seconds.observe(time.monotonic() - started)
            _log.debug(
                "received", messages=len(messages), seconds=round(time.monotonic() - started, 4)
            )
            for message in messages:
                held = self._hold(message)
                if self._stop.is_set():
                    await self._release(held, "shutting down")
                    continue
                self._unstarted += 1
                self._spawn(self._prepare(held), held)
            if messages:
                continue
            if burst and not self._held and await self._queue.is_empty():
                _log.info("burst mode: queue empty and nothing in flight")
                return
            if wait == 0:
                await asyncio.sleep(EMPTY_POLL_PAUSE)  # short polls: do not spin

    async def _await_runtime(self) -> None:
        """Receive nothing until the runtime answers again (or the agent stops)."""
        if await wait_for_runtime(
            self._runtime, self._stop, interval=self._cfg.runtime_poll_seconds
        ):
            self._runtime_down = False

    def _hold(self, message: ReceivedMessage) -> _Held:
        # A missing or malformed header yields no parent: the task starts a trace of its own.
        parent = (
            _xray.extract({TRACE_HEADER: message.trace_header}) if message.trace_header else None
        )
        span = _tracer.start_span(
            "receive",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "aws_sqs",
                "messaging.message.id": message.message_id,
                "sdq.receive_count": message.receive_count,
            },
        )
        held = _Held(
            message=message,
            log=_log,
            received_wall=self._clock(),
            next_extend=time.monotonic() + self._cfg.visibility / 3,
            next_cancel_check=time.monotonic() + self._cfg.cancel_poll_seconds,
            span=span,
        )
        held.log = _log.bind(
            message_id=message.message_id,
            receive_count=message.receive_count,
            trace_id=held.trace_id,
        )
        self._held[message.receipt_handle] = held
        self._metrics.in_flight.set(len(self._held))
        return held

    def _spawn(self, coro: Coroutine[Any, Any, None], held: _Held | None) -> None:
        assert self._tg is not None
        self._tg.create_task(self._guard(coro, held))

    async def _guard(self, coro: Awaitable[None], held: _Held | None) -> None:
        """The one top-level guard: a bug in a stage never kills the loop or loses the message."""
        try:
            await coro
        except Exception:
            log = held.log if held else _log
            log.exception("unexpected error in a task stage; returning the message for retry")
            if held is not None and held.message.receipt_handle in self._held:
                await self._backoff(held)

    # ----------------------------------------------------------------------- prepare

    async def _prepare(self, held: _Held) -> None:
        started = time.monotonic()
        enqueued = False
        try:
            with held.stage("prepare"):
                job = await self._prepare_job(held)
            if job is None:
                return
            if self._stop.is_set():
                await self._release(held, "shutting down")
                return
            job.timings["prepare"] = time.monotonic() - started
            self._metrics.stage("prepare", job.timings["prepare"])
            self._ready.put_nowait(job)
            enqueued = True
        except PoisonMessage as poison:
            await self._poison(held, poison)
        except TaskCancelled:
            await self._cancelled(held)
        except TaskFailure as failure:
            await self._fail(held, failure)
        finally:
            if not enqueued:
                self._unstarted -= 1
                await self._notify()

    async def _prepare_job(self, held: _Held) -> _Job | None:
        task = parse_task(held.message.body)
        held.task = task
        held.log = held.log.bind(task_id=task.id, runtime=task.runtime)
        held.span.set_attribute("sdq.task_id", task.id)
        held.span.set_attribute("sdq.runtime", task.runtime)
        queue_wait = max((held.received_wall - task.submitted_at).total_seconds(), 0.0)
        self._metrics.queue_wait_seconds.observe(queue_wait)
        if task.runtime != self._cfg.runtime_name:
            raise InvalidTaskError(
                f"task is for runtime {task.runtime!r}, this agent runs {self._cfg.runtime_name!r}"
            )
        if task.content is not None:
            content = task.content
        else:
            with held.stage("claim_check"):
                content = await self._claim_check(task)
        request = self._runtime.prepare(task, content)
        with held.stage("status.claim"):
            claim = await self._status.claim(task, self._output_location(task), self._clock())
        held.log.debug("claimed", outcome=claim.outcome.value)
        if claim.outcome is ClaimOutcome.ALREADY_DONE:
            state = claim.record.status.value if claim.record else "done"
            held.log.info("task already finished; deleting the redelivered message", status=state)
            if claim.unannounced and claim.record is not None:
                await self._announce_record(task, held, claim.record)
            await self._queue.delete(held.message)
            self._metrics.outcome("skipped")
            await self._drop(held)
            return None
        if claim.outcome is ClaimOutcome.CANCEL_REQUESTED:
            raise TaskCancelled
        held.log.info(
            "task received", tasktype=task.tasktype.value, attempt=held.message.receive_count
        )
        fetch_started = time.monotonic()
        if request.inputs:
            with held.stage("fetch_inputs"):
                fetched = await self._fetch_inputs(request.inputs)
                request = await self._runtime.stage_inputs(request, fetched)
        fetch_s = time.monotonic() - fetch_started
        self._metrics.stage("fetch", fetch_s)
        return _Job(
            held=held,
            parsed=ParsedTask(task, content),
            request=request,
            timings={"queue": round(queue_wait, 3), "fetch": round(fetch_s, 3)},
        )

    async def _claim_check(self, task: TaskMessage) -> dict[str, Any]:
        assert task.content_ref is not None
        try:
            bucket, key = parse_s3_uri(task.content_ref)
        except ValueError as exc:
            raise InvalidTaskError(str(exc)) from None
        if bucket != self._cfg.output_bucket:
            raise InvalidTaskError(f"claim check must live in the output bucket, not {bucket!r}")
        data, _ = await self._store.get(bucket, key, MAX_CLAIM_CHECK_BYTES)
        try:
            content = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidTaskError("claim-checked content is not JSON") from None
        if not isinstance(content, dict):
            raise InvalidTaskError("claim-checked content is not a JSON object")
        return content

    async def _fetch_inputs(self, refs: tuple[InputRef, ...]) -> list[FetchedInput]:
        async def one(ref: InputRef) -> FetchedInput:
            kind = classify(ref.url)
            if kind == "s3":
                bucket, key = check_s3_input(ref.url, self._cfg.input_buckets)
                data, content_type = await self._store.get(bucket, key, self._cfg.max_input_bytes)
            elif kind == "data":
                data, content_type = decode_data_uri(ref.url, self._cfg.max_input_bytes)
            else:
                data, content_type = await self._fetcher.fetch_url(ref.url)
            return FetchedInput(ref, data, content_type)

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(ref)) for ref in refs]
        except ExceptionGroup as group:
            raise _first_failure(group) from None
        return [t.result() for t in tasks]

    # ----------------------------------------------------------------------- generate

    async def _generate_loop(self) -> None:
        while True:
            job = await self._ready.get()
            if job is None:
                await self._notify()
                return
            if self._stop.is_set():
                self._unstarted -= 1
                await self._release(job.held, "shutting down")
                continue
            if job.held.signal == "cancel":  # cancelled while it waited for the runtime
                self._unstarted -= 1
                await self._cancelled(job.held)
                continue
            self._generating += 1
            self._unstarted -= 1
            job.held.generating = True
            started = time.monotonic()
            try:
                with job.held.stage("generate"):
                    # The request goes out first; waking the receiver (CPU work for the next
                    # prefetch) comes after, so nothing sits between two generations.
                    run = asyncio.ensure_future(self._runtime.run(job.request))
                    self._spawn(self._record_stage(job.held, "generating"), None)
                    await self._notify()
                    result = await self._generate(job, run, started)
            except TaskFailure as failure:
                if isinstance(failure, RuntimeUnavailableError):
                    self._runtime_down = True
                await self._fail(job.held, failure)
                continue
            except TaskCancelled:
                await self._cancelled(job.held)
                continue
            except TaskReleased:
                await self._release(job.held, "drain budget exhausted; interrupted")
                continue
            except Exception:
                job.held.log.exception("unexpected error during generation; returning the message")
                await self._backoff(job.held)
                continue
            finally:
                job.held.generating = False
                self._generating -= 1
                if self._ready.empty():  # else the next iteration notifies after its request
                    await self._notify()
            self._spawn(self._finish(job, result), job.held)

    async def _generate(
        self, job: _Job, run: asyncio.Future[RuntimeResult], started: float
    ) -> RuntimeResult:
        held = job.held
        signalled: asyncio.Future[Any] = asyncio.ensure_future(held.signalled.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {run, signalled}
            done, _ = await asyncio.wait(
                waiting,
                timeout=self._cfg.task_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if run in done:
                return run.result()
            held.raise_signal("deadline")
            await self._interrupt(job, run)
        finally:
            signalled.cancel()
            if not run.done():
                run.cancel()
            elapsed = time.monotonic() - started
            self._metrics.busy(elapsed)
            self._metrics.stage("generate", elapsed)
            job.timings["generate"] = round(elapsed, 3)
        if held.signal == "cancel":
            raise TaskCancelled
        if held.signal == "release":
            raise TaskReleased
        raise DeadlineExceededError(
            f"generation exceeded {self._cfg.task_timeout:g} s; interrupted"
        )

    async def _interrupt(self, job: _Job, run: asyncio.Future[RuntimeResult]) -> None:
        job.held.log.warning("interrupting the runtime", reason=job.held.signal)
        try:
            async with asyncio.timeout(INTERRUPT_CALL_TIMEOUT):
                await self._runtime.interrupt(job.request.task_id)
        except (TimeoutError, TaskFailure) as exc:
            job.held.log.warning("runtime interrupt failed", error=str(exc))
        # Let the interrupted request come back so the runtime is free for the next task.
        await asyncio.wait({run}, timeout=self._cfg.interrupt_grace)
        if run.done() and not run.cancelled():
            run.exception()  # consumed: the interrupted answer is discarded

    # ----------------------------------------------------------------------- finish

    async def _finish(self, job: _Job, result: RuntimeResult) -> None:
        held, task = job.held, job.parsed.task
        # Yield once: the next generation request (started right after this task was spawned)
        # goes out before the CPU work of uploading.
        await asyncio.sleep(0)
        self._spawn(self._record_stage(held, "uploading"), None)
        try:
            started = time.monotonic()
            with held.stage("upload"):
                urls = await self._upload(task, result)
            job.timings["upload"] = round(time.monotonic() - started, 3)
            self._metrics.stage("upload", job.timings["upload"])
            started = time.monotonic()
            with held.stage("status.update"):
                announced = await self._status.complete(task.id, urls, self._clock())
            with held.stage("notify"):
                notification = None
                if announced:
                    job.timings["total"] = round(
                        (self._clock() - task.submitted_at).total_seconds(), 3
                    )
                    notification = self._notification(
                        task=task,
                        held=held,
                        state=TaskState.COMPLETED,
                        urls=urls,
                        error=None,
                        timings=job.timings,
                    )
                    await self._publish(notification)
                await self._queue.delete(held.message)
            self._metrics.stage("notify", time.monotonic() - started)
        except TaskFailure as failure:
            await self._fail(held, failure)
            return
        held.log.info("task completed", outputs=len(urls), timings=job.timings, announced=announced)
        self._metrics.outcome("completed" if announced else "cancelled")
        await self._drop(held)
        if notification is not None and task.callback_url:
            self._spawn(self._webhook(task, notification, held), None)

    async def _record_stage(self, held: _Held, stage: str) -> None:
        """Best effort, beside the work itself (never in series with the GPU)."""
        assert held.task is not None
        try:
            with held.within():
                await self._status.stage(held.task.id, stage, self._clock())
        except TaskFailure as exc:
            held.log.warning("could not record the task's stage", stage=stage, error=str(exc))

    async def _upload(self, task: TaskMessage, result: RuntimeResult) -> list[str]:
        bucket = self._cfg.output_bucket
        keys = [
            image_key(task.prefix, task.id, n, f.ext) for n, f in enumerate(result.files, start=1)
        ]
        out_key = response_key(task.prefix, task.id)
        out_body = json.dumps(result.response, separators=(",", ":"), default=str).encode("utf-8")
        async with asyncio.TaskGroup() as tg:
            for key, file in zip(keys, result.files, strict=True):
                tg.create_task(self._store.put(bucket, key, file.data, file.content_type))
            tg.create_task(self._store.put(bucket, out_key, out_body, "application/json"))
        return [f"s3://{bucket}/{key}" for key in keys]

    async def _webhook(
        self, task: TaskMessage, notification: ResultNotification, held: _Held
    ) -> None:
        assert task.callback_url is not None
        body = notification.model_dump_json(exclude_none=True).encode("utf-8")
        with held.stage("webhook") as span:
            delivered = await self._webhooks.deliver(task.callback_url, body, task.id)
            span.set_attribute("sdq.delivered", delivered)
        held.log.info("webhook", delivered=delivered, url=redact_url(task.callback_url))

    # ----------------------------------------------------------------------- outcomes

    def _output_location(self, task: TaskMessage) -> str:
        return output_location(self._cfg.output_bucket, task.prefix, task.id)

    def _notification(
        self,
        *,
        task: TaskMessage,
        held: _Held,
        state: TaskState,
        urls: list[str],
        error: TaskError | None,
        timings: dict[str, float] | None,
    ) -> ResultNotification:
        return ResultNotification(
            id=task.id,
            runtime=task.runtime,
            result=state is TaskState.COMPLETED,
            status=state,
            image_url=urls,
            output_url=self._output_location(task),
            context=task.context,
            error=error,
            timings=timings,
            trace_id=held.trace_id,
        )

    async def _publish(self, notification: ResultNotification) -> None:
        """Publish, then mark the status row announced (a redelivery re-announces otherwise)."""
        await self._publisher.publish(notification)
        await self._status.announced(notification.id)

    async def _announce_record(self, task: TaskMessage, held: _Held, record: StatusRecord) -> None:
        """A redelivered task whose final notification never went out: announce it now."""
        held.log.warning("announcing a finished task whose notification was not confirmed")
        await self._publish(
            self._notification(
                task=task,
                held=held,
                state=record.status,
                urls=list(record.outputs),
                error=record.error,
                timings=None,
            )
        )

    async def _fail(self, held: _Held, failure: TaskFailure) -> None:
        """Permanent → failed + delete; transient → backoff, or final failure before the DLQ."""
        message = held.message
        final = failure.permanent or message.receive_count >= self._cfg.max_receive_count
        log = held.log.bind(error_code=failure.code, error=failure.message)
        try:
            with held.within():
                if final and held.task is not None:
                    error = TaskError(
                        code=failure.code, message=failure.message, permanent=failure.permanent
                    )
                    await self._status.fail(held.task, held.task.id, error, self._clock())
                    await self._publish(
                        self._notification(
                            task=held.task,
                            held=held,
                            state=TaskState.FAILED,
                            urls=[],
                            error=error,
                            timings=None,
                        )
                    )
                if failure.permanent:
                    await self._queue.delete(message)
                    log.error("task failed permanently; message deleted")
                    self._metrics.outcome("failed")
                elif final:
                    await self._queue.set_visibility(message, 0)
                    log.error(
                        "task failed on its last allowed receive; left for the dead-letter queue"
                    )
                    self._metrics.outcome("failed")
                else:
                    delay = self._cfg.backoff(message.receive_count)
                    await self._queue.set_visibility(message, delay)
                    log.warning("task failed transiently; will retry", retry_in_s=delay)
                    self._metrics.outcome("retried")
        except TaskFailure as exc:
            log.error("could not record the failure; the message will reappear", cause=str(exc))
        await self._drop(held)

    async def _poison(self, held: _Held, poison: PoisonMessage) -> None:
        """Not a task: logged, final failure if an id is known, then left to dead-letter."""
        message = held.message
        log = held.log.bind(
            task_id=poison.task_id, reason=poison.reason, body_bytes=len(message.body)
        )
        last = message.receive_count >= self._cfg.max_receive_count
        try:
            with held.within():
                if last and poison.task_id is not None:
                    error = TaskError(code="invalid_message", message=poison.reason, permanent=True)
                    await self._status.fail(None, poison.task_id, error, self._clock())
                    await self._publish(
                        ResultNotification(
                            id=poison.task_id,
                            runtime=self._cfg.runtime_name,
                            result=False,
                            status=TaskState.FAILED,
                            output_url=output_location(self._cfg.output_bucket, "", poison.task_id),
                            error=error,
                            trace_id=held.trace_id,
                        )
                    )
                await self._queue.set_visibility(message, 0)
        except TaskFailure as exc:
            log.error("could not hand back a poison message", cause=str(exc))
        log.error("poison message; leaving it for the dead-letter queue", last_receive=last)
        self._metrics.outcome("poison")
        await self._drop(held)

    async def _cancelled(self, held: _Held) -> None:
        assert held.task is not None
        task = held.task
        try:
            with held.within():
                await self._status.cancelled(task.id, self._clock())
                await self._publish(
                    self._notification(
                        task=task,
                        held=held,
                        state=TaskState.CANCELLED,
                        urls=[],
                        error=None,
                        timings=None,
                    )
                )
                await self._queue.delete(held.message)
                held.log.info("task cancelled")
                self._metrics.outcome("cancelled")
        except TaskFailure as exc:
            held.log.error(
                "could not record the cancellation; the message will reappear", cause=str(exc)
            )
        await self._drop(held)

    async def _release(self, held: _Held, reason: str) -> None:
        """Hand the message back at once (visibility 0): another agent takes it."""
        try:
            with held.within():
                await self._queue.set_visibility(held.message, 0)
        except TaskFailure as exc:
            held.log.warning(
                "could not hand back the message; it reappears after its visibility", cause=str(exc)
            )
        held.log.info("message handed back", reason=reason)
        self._metrics.outcome("released")
        await self._drop(held)

    async def _backoff(self, held: _Held) -> None:
        try:
            with held.within():
                await self._queue.set_visibility(
                    held.message, self._cfg.backoff(held.message.receive_count)
                )
        except TaskFailure as exc:
            held.log.warning("could not delay the message", cause=str(exc))
        await self._drop(held)

    async def _drop(self, held: _Held) -> None:
        if self._held.pop(held.message.receipt_handle, None) is not None:
            held.span.end()
        await self._notify()

    # ----------------------------------------------------------------------- heartbeat, drain

    async def _heartbeat_loop(self) -> None:
        tick = max(0.05, min(1.0, self._cfg.visibility / 6, self._cfg.cancel_poll_seconds / 2))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due = [h for h in self._held.values() if now >= h.next_extend]
            for held in due:
                held.next_extend = now + self._cfg.visibility / 3
            if due:
                try:
                    await self._queue.extend([h.message for h in due], self._cfg.visibility)
                except TaskFailure as exc:
                    _log.warning("visibility heartbeat failed", error=str(exc), messages=len(due))
            # Cancel requests: for tasks generating (interrupt) and tasks waiting to (skip).
            check = [
                h
                for h in self._held.values()
                if h.task is not None and h.signal is None and now >= h.next_cancel_check
            ]
            for held in check:
                held.next_cancel_check = now + self._cfg.cancel_poll_seconds
            await asyncio.gather(*(self._check_cancel(h) for h in check))

    async def _check_cancel(self, held: _Held) -> None:
        assert held.task is not None
        try:
            if await self._status.cancel_requested(held.task.id):
                held.log.info("cancellation requested")
                held.raise_signal("cancel")
        except TaskFailure as exc:
            held.log.warning("could not read the status row", error=str(exc))

    async def _drain_on_stop(self) -> None:
        await self._stop.wait()
        await self._notify()
        _log.info("stopping: receiving no more; handing back prefetched messages")
        while not self._ready.empty():
            job = self._ready.get_nowait()
            if job is not None:
                self._unstarted -= 1
                await self._release(job.held, "shutting down (prefetched)")
        for _ in range(self._cfg.concurrency):
            self._ready.put_nowait(None)

        def generating() -> bool:
            return any(h.generating for h in self._held.values())

        try:
            async with asyncio.timeout(self._cfg.drain_seconds), self._changed:
                await self._changed.wait_for(lambda: not generating())
        except TimeoutError:
            for held in self._held.values():
                if held.generating:
                    held.raise_signal("release")


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling error of a failed fetch group: permanent first, then transient."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for kind in (PermanentTaskError, TaskFailure):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0] if flat else InputRefusedError("input fetch failed")
