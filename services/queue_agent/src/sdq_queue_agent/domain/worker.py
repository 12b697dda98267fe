"""The pipelined worker loop: keeps the runtime busy and every message accounted for.

Stages of one message (each in its own task of one TaskGroup):

1. *prepare* (prefetch, :mod:`.preparation`): parse, resolve the claim check, claim the status
   row, fetch inputs and stage them on the runtime — while the runtime generates the previous
   task;
2. *generate* (here): one runtime call per generator (``concurrency``), with a deadline, cancel
   and shutdown signals that interrupt the runtime; never retried. With a runtime that queues
   requests in order (SD WebUI), each generator sends the next request while the current one
   generates (look-ahead), so the runtime never waits for the agent between two tasks;
3. *outcome* (:mod:`.outcomes`): upload, status, publish, delete — or fail, retry, cancel,
   release — while the runtime already generates the next task.

Held messages, the capacity accounting and the visibility heartbeat live in :mod:`.held`;
deletes go out in batches (:mod:`.deletes`). AWS calls are amortised where no decision rides
on them: a receive waits until half the prefetch depth is free, and settled messages are
deleted ten at a time or after a short bounded delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from sdq_queue_agent.domain.clock import SYSTEM_CLOCK, Clock
from sdq_queue_agent.domain.deletes import BatchDeleter
from sdq_queue_agent.domain.held import Held, HeldRegistry, Phase
from sdq_queue_agent.domain.model import RuntimeResult
from sdq_queue_agent.domain.outcomes import Outcomes
from sdq_queue_agent.domain.parsing import PoisonMessage
from sdq_queue_agent.domain.policy import WorkerConfig
from sdq_queue_agent.domain.ports import (
    InputFetcher,
    LinkSigner,
    Metrics,
    ObjectStore,
    ResultPublisher,
    Runtime,
    StatusStore,
    TaskQueue,
    WebhookSender,
)
from sdq_queue_agent.domain.preparation import Job, NotClaimed, Preparer
from sdq_queue_agent.domain.readiness import wait_for_runtime
from sdq_queue_agent.errors import (
    DeadlineExceededError,
    RuntimeUnavailableError,
    TaskCancelled,
    TaskFailure,
    TaskReleased,
    TransientTaskError,
)

_log = structlog.get_logger("sdq_queue_agent.worker")
# How long the agent waits for the runtime to acknowledge an interrupt before moving on.
INTERRUPT_CALL_TIMEOUT = 10.0
EMPTY_POLL_PAUSE = 0.05

__all__ = ["Worker", "WorkerConfig"]


@dataclass
class Sent:
    """A job whose request the runtime has."""

    job: Job
    run: asyncio.Future[RuntimeResult]
    # The agent asked the runtime to interrupt it (cancel, deadline, drain).
    interrupted: bool = False


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
        links: LinkSigner | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._cfg = config
        self._queue = queue
        self._status = status
        self._runtime = runtime
        self._metrics = metrics
        self._clock = clock
        self._held = HeldRegistry(config, clock, metrics)
        self._deletes = BatchDeleter(
            queue,
            clock,
            max_delay=config.delete_max_delay,
            status=status,
            idle=lambda: (
                not self._held.count(Phase.PREPARING, Phase.READY, Phase.QUEUED, Phase.GENERATING)
            ),
        )
        self._preparer = Preparer(
            config,
            store=store,
            status=status,
            fetcher=fetcher,
            runtime=runtime,
            metrics=metrics,
            clock=clock,
        )
        self._outcomes = Outcomes(
            config,
            registry=self._held,
            queue=queue,
            store=store,
            publisher=publisher,
            status=status,
            webhooks=webhooks,
            metrics=metrics,
            links=links,
            clock=clock,
            spawn=lambda coro: self._spawn(coro, None),
            deletes=self._deletes,
        )
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._ready: asyncio.Queue[Job | None] = asyncio.Queue()
        self._runtime_down = False
        # Send the next request while the runtime generates (only to a runtime that queues
        # requests and runs them in order).
        self._lookahead = config.lookahead and runtime.queues_requests

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
            heartbeat = tg.create_task(self._held.heartbeat(self._queue, self._status))
            deleter = tg.create_task(self._deletes.run())
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
            self._deletes.stop_waiting()
            await self._held.wait_for(lambda: not len(self._held))
            heartbeat.cancel()
            deleter.cancel()
        self._tg = None
        _log.info("worker_stopped", holding=len(self._held))

    def _spawn(self, coro: Coroutine[Any, Any, None], held: Held | None) -> None:
        if self._tg is None:  # only while run() is active; anything else is a bug
            coro.close()
            raise RuntimeError("the worker is not running")
        self._tg.create_task(self._guard(coro, held))

    async def _guard(self, coro: Coroutine[Any, Any, None], held: Held | None) -> None:
        """The one top-level guard: a bug in a stage never kills the loop or loses the message."""
        try:
            await coro
        except Exception:
            log = held.log if held else _log
            log.exception("unexpected_error_in_a_task_stage_returning_the_message_for_retry")
            if held is not None and held in self._held:
                await self._outcomes.backoff(held)

    # ----------------------------------------------------------------------- receive

    async def _receive_loop(self, burst: bool) -> None:
        wait = self._cfg.burst_wait_time if burst else self._cfg.wait_time
        while not self._stop.is_set():
            await self._held.wait_for(lambda: self._should_receive() or self._stop.is_set())
            if self._stop.is_set():
                return
            if self._runtime_down:
                await self._await_runtime()
                continue
            wanted = min(10, self._held.capacity())
            started = self._clock.monotonic()
            try:
                messages = await self._queue.receive(wanted, wait, self._cfg.visibility)
            except TransientTaskError as exc:
                _log.warning("receive_failed_retrying", error=str(exc))
                await self._clock.sleep(1.0)
                continue
            elapsed = self._clock.monotonic() - started
            self._metrics.receive_seconds.observe(elapsed)
            _log.debug("received", messages=len(messages), seconds=round(elapsed, 4))
            for message in messages:
                held = self._held.hold(message)
                if self._stop.is_set():
                    await self._outcomes.release(held, "shutting down")
                    continue
                self._spawn(self._prepare(held), held)
            if messages:
                continue
            self._deletes.flush()  # the queue ran dry: nothing will fill a batch soon
            if burst and not len(self._held) and await self._queue.is_empty():
                _log.info("burst_mode_queue_empty_and_nothing_in_flight")
                return
            if wait == 0:
                await self._clock.sleep(EMPTY_POLL_PAUSE)  # short polls: do not spin

    def _should_receive(self) -> bool:
        """A receive once enough slots are free to make the call worth it (half the prefetch
        depth). The threshold never exceeds the prefetch depth, so the receive goes out while
        the other half is still prepared ahead of the runtime: it never runs dry waiting."""
        return self._held.capacity() >= self._cfg.receive_batch(self._held.depth)

    async def _await_runtime(self) -> None:
        """Receive nothing until the runtime answers again (or the agent stops)."""
        if await wait_for_runtime(
            self._runtime, self._stop, interval=self._cfg.runtime_poll_seconds
        ):
            self._runtime_down = False

    # ----------------------------------------------------------------------- prepare

    async def _prepare(self, held: Held) -> None:
        try:
            with held.stage("prepare"):
                prepared = await self._preparer.prepare(held)
        except PoisonMessage as poison:
            await self._outcomes.poison(held, poison)
            return
        except TaskCancelled:
            await self._outcomes.cancelled(held)
            return
        except TaskFailure as failure:
            await self._outcomes.fail(held, failure)
            return
        if isinstance(prepared, NotClaimed):
            await self._outcomes.not_claimed(held, prepared)
        elif self._stop.is_set():
            await self._outcomes.release(held, "shutting down")
        else:
            held.phase = Phase.READY
            self._ready.put_nowait(prepared)

    # ----------------------------------------------------------------------- generate

    async def _generate_loop(self) -> None:
        """One generator: the head generation, and (runtime look-ahead) the next request sent
        behind it, so a runtime that queues requests starts it the moment the head ends."""
        ahead: asyncio.Future[Sent | None] | None = None
        suspect = False
        try:
            while True:
                if ahead is None:
                    sent = await self._send_next(queued=False)
                else:
                    sent, ahead = await ahead, None
                if sent is None:
                    await self._held.notify()
                    return
                self._held.generating(sent.job.held)
                if self._lookahead and not suspect:
                    ahead = asyncio.ensure_future(self._send_next(queued=True))
                await self._head(sent, suspect)
                # An interrupt meant for the head may have reached the runtime after the head
                # ended, and stopped the generation sent behind it: that one runs again.
                suspect = sent.interrupted and ahead is not None and ahead.done()
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()

    async def _send_next(self, *, queued: bool) -> Sent | None:
        """The next prepared job with its request sent to the runtime (None: stop); ``queued``:
        sent behind the generation in progress."""
        while True:
            job = await self._ready.get()
            if job is None:
                return None
            held = job.held
            if self._stop.is_set():
                await self._outcomes.release(held, "shutting down")
                continue
            if held.signal == "cancel":  # cancelled while it waited for the runtime
                # Settled beside the next generation: its delete waits for a batch.
                held.phase = Phase.FINISHING
                self._spawn(self._outcomes.cancelled(held), held)
                continue
            held.phase = Phase.QUEUED if queued else Phase.GENERATING
            # The request goes out first; waking the receiver (CPU work for the next prefetch)
            # comes after, so nothing sits between two generations.
            sent = Sent(job, asyncio.ensure_future(self._runtime.run(job.request)))
            await self._held.notify()
            return sent

    async def _head(self, sent: Sent, suspect: bool) -> None:
        """The generation at the head of the runtime, to its outcome."""
        job = sent.job
        held = job.held
        started = self._clock.monotonic()
        try:
            with held.stage("generate"):
                result = await self._generate(sent, started)
                if suspect:
                    held.log.info("generating_again_after_an_interrupt_meant_for_the_task_ahead")
                    sent.run = asyncio.ensure_future(self._runtime.run(job.request))
                    result = await self._generate(sent, self._clock.monotonic())
        except TaskFailure as failure:
            if isinstance(failure, RuntimeUnavailableError):
                self._runtime_down = True
            held.phase = Phase.FINISHING
            # Beside the next generation (a permanent failure's delete waits for a batch).
            self._spawn(self._outcomes.fail(held, failure), held)
            return
        except TaskCancelled:
            held.phase = Phase.FINISHING
            self._spawn(self._outcomes.cancelled(held), held)
            return
        except TaskReleased:
            held.phase = Phase.FINISHING
            await self._outcomes.release(held, "drain budget exhausted; interrupted")
            return
        except Exception:
            held.log.exception("unexpected_error_during_generation_returning_the_message")
            held.phase = Phase.FINISHING
            await self._outcomes.backoff(held)
            return
        finally:
            if held.phase is Phase.GENERATING:
                held.phase = Phase.FINISHING
            if self._ready.empty():  # else the next send notifies after its request
                await self._held.notify()
        self._held.generated(job.timings["generate"])
        self._spawn(self._finish(job, result), held)

    async def _finish(self, job: Job, result: RuntimeResult) -> None:
        # Yield once: the next generation request (started right after this task was spawned)
        # goes out before the CPU work of uploading.
        await asyncio.sleep(0)
        await self._outcomes.complete(job, result)

    async def _generate(self, sent: Sent, started: float) -> RuntimeResult:
        job, run = sent.job, sent.run
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
            sent.interrupted = True
            await self._interrupt(job, run)
        finally:
            signalled.cancel()
            if not run.done():
                run.cancel()
            elapsed = self._clock.monotonic() - started
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

    async def _interrupt(self, job: Job, run: asyncio.Future[RuntimeResult]) -> None:
        job.held.log.warning("interrupting_the_runtime", reason=job.held.signal)
        try:
            async with asyncio.timeout(INTERRUPT_CALL_TIMEOUT):
                await self._runtime.interrupt(job.request.task_id)
        except (TimeoutError, TaskFailure) as exc:
            job.held.log.warning("runtime_interrupt_failed", error=str(exc))
        # Let the interrupted request come back so the runtime is free for the next task.
        await asyncio.wait({run}, timeout=self._cfg.interrupt_grace)
        if run.done() and not run.cancelled():
            run.exception()  # consumed: the interrupted answer is discarded

    # ----------------------------------------------------------------------- drain

    async def _drain_on_stop(self) -> None:
        await self._stop.wait()
        self._deletes.stop_waiting()
        await self._held.notify()
        _log.info("stopping_receiving_no_more_handing_back_prefetched_messages")
        while not self._ready.empty():
            job = self._ready.get_nowait()
            if job is not None:
                await self._outcomes.release(job.held, "shutting down (prefetched)")
        for _ in range(self._cfg.concurrency):
            self._ready.put_nowait(None)

        def generating() -> bool:
            return self._held.count(Phase.GENERATING, Phase.QUEUED) > 0

        try:
            async with asyncio.timeout(self._cfg.drain_seconds):
                await self._held.wait_for(lambda: not generating())
        except TimeoutError:
            for held in self._held.values():
                if held.at_runtime:
                    held.raise_signal("release")
