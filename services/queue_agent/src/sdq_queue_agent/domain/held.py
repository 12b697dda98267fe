"""The messages the agent holds: one registry with the capacity accounting and the heartbeat
(visibility extension and cancel checks of every held message)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

import structlog
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.trace import SpanKind

from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.domain.clock import Clock
from sdq_queue_agent.domain.model import ReceivedMessage
from sdq_queue_agent.domain.policy import WorkerConfig
from sdq_queue_agent.domain.ports import Metrics, StatusStore, TaskQueue
from sdq_queue_agent.errors import TaskFailure

_tracer = trace.get_tracer("sdq_queue_agent")
_xray = AwsXRayPropagator()
TRACE_HEADER = "X-Amzn-Trace-Id"
_log = structlog.get_logger("sdq_queue_agent.worker")
Signal = Literal["deadline", "cancel", "release"]


class Phase(Enum):
    PREPARING = "preparing"  # parse, claim, fetch inputs
    READY = "ready"  # prepared, waiting for a generator
    # Sent to the runtime behind the generation in progress (runtime look-ahead): the runtime
    # starts it the moment that one ends.
    QUEUED = "queued"
    GENERATING = "generating"  # the runtime works on it
    FINISHING = "finishing"  # upload, status, notify, or an outcome being recorded


# The stage a held task shows on its status row (written by the heartbeat's lease renew).
STAGE = {
    Phase.PREPARING: "preparing",
    Phase.READY: "prefetched",
    Phase.QUEUED: "prefetched",
    Phase.GENERATING: "generating",
    Phase.FINISHING: "uploading",
}


@dataclass
class Held:
    """A message the agent is responsible for until it deletes or hands it back."""

    message: ReceivedMessage
    log: Any
    received_wall: datetime
    next_extend: float
    next_cancel_check: float
    # The task's span in the producer's trace (continued from the message's trace header).
    span: trace.Span
    task: TaskMessage | None = None
    phase: Phase = Phase.PREPARING
    # This receive's name on the status row's lease, and whether it holds the lease (the
    # heartbeat renews it).
    holder: str = ""
    leased: bool = False
    # The stage the status row shows for it (the claim writes "preparing"; renews update it).
    shown_stage: str = "preparing"
    signal: Signal | None = None
    signalled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def at_runtime(self) -> bool:
        """The runtime has its request (generating it, or queued behind the one it generates)."""
        return self.phase in (Phase.GENERATING, Phase.QUEUED)

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


class HeldRegistry:
    """Every held message by receipt handle; capacity is derived from their phases (no counter
    kept by hand), and every change wakes whoever waits on :meth:`wait_for`."""

    def __init__(self, config: WorkerConfig, clock: Clock, metrics: Metrics) -> None:
        self._cfg = config
        self._clock = clock
        self._metrics = metrics
        self._held: dict[str, Held] = {}
        self._changed = asyncio.Condition()
        # Typical generation seconds (a moving average of the successful ones), which sizes
        # the prefetch depth.
        self._generation_s: float | None = None
        self.depth = config.prefetch

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, held: Held) -> bool:
        return held.message.receipt_handle in self._held

    def values(self) -> list[Held]:
        return list(self._held.values())

    def count(self, *phases: Phase) -> int:
        return sum(1 for h in self._held.values() if h.phase in phases)

    def capacity(self) -> int:
        """How many more messages to receive: the prefetch plus idle generators, minus what is
        received and not yet generating."""
        idle = self._cfg.concurrency - self.count(Phase.GENERATING)
        return self.depth + max(idle, 0) - self.count(Phase.PREPARING, Phase.READY)

    def generated(self, seconds: float) -> None:
        """A generation took ``seconds``: the prefetch depth follows the typical length."""
        typical = self._generation_s
        self._generation_s = seconds if typical is None else 0.8 * typical + 0.2 * seconds
        self.depth = self._cfg.prefetch_depth(self._generation_s)

    def hold(self, message: ReceivedMessage) -> Held:
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
        now = self._clock.monotonic()
        held = Held(
            message=message,
            log=_log,
            received_wall=self._clock.now(),
            next_extend=now + self._cfg.visibility / 3,
            next_cancel_check=now + self._cfg.cancel_poll_seconds,
            span=span,
            holder=f"{self._cfg.agent_id}/{uuid.uuid4().hex[:12]}",
        )
        held.log = _log.bind(
            message_id=message.message_id,
            receive_count=message.receive_count,
            trace_id=held.trace_id,
        )
        self._held[message.receipt_handle] = held
        self._metrics.in_flight.set(len(self._held))
        return held

    async def move(self, held: Held, phase: Phase) -> None:
        held.phase = phase
        await self.notify()

    def generating(self, held: Held) -> None:
        """The runtime starts on it: its cancel polls count from now."""
        held.phase = Phase.GENERATING
        held.next_cancel_check = self._clock.monotonic() + self._cfg.cancel_poll_seconds

    async def drop(self, held: Held) -> None:
        """The message is deleted or handed back: the agent is no longer responsible for it."""
        if self._held.pop(held.message.receipt_handle, None) is not None:
            held.span.end()
        await self.notify()

    async def notify(self) -> None:
        self._metrics.in_flight.set(len(self._held))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    # ----------------------------------------------------------------------- heartbeat

    async def heartbeat(self, queue: TaskQueue, status: StatusStore) -> None:
        """Forever: extend the visibility (and the status row's lease) of held messages, and
        look for cancel requests of held tasks."""
        tick = max(0.05, min(1.0, self._cfg.visibility / 6, self._cfg.cancel_poll_seconds / 2))
        while True:
            await self._clock.sleep(tick)
            await self.beat(queue, status)

    async def beat(self, queue: TaskQueue, status: StatusStore) -> None:
        """One round. Per held task at most one status call: the lease renew when the
        visibility is due (it records the stage and answers whether a cancel was asked), else,
        for a generating task, a cancel poll when that is due. The lease clock starts at the
        receive and the poll clock when the generation starts, so a task held for less than a
        third of the visibility and generating for less than a poll period makes no call; a
        prefetched task's cancel is seen by its renew or by the first poll of its generation."""
        now = self._clock.monotonic()
        due = [h for h in self._held.values() if now >= h.next_extend]
        for held in due:
            held.next_extend = now + self._cfg.visibility / 3
        if due:
            try:
                await queue.extend([h.message for h in due], self._cfg.visibility)
            except TaskFailure as exc:
                _log.warning("visibility_heartbeat_failed", error=str(exc), messages=len(due))
        renew = [h for h in due if h.leased and h.task is not None]
        renewing = {id(h) for h in renew}
        check = [
            h
            for h in self._held.values()
            if h.leased
            and h.task is not None
            and h.signal is None
            and h.phase is Phase.GENERATING
            and now >= h.next_cancel_check
            and id(h) not in renewing
        ]
        for held in (*renew, *check):
            held.next_cancel_check = now + self._cfg.cancel_poll_seconds
        # A generation's first poll is a renew when the row does not show "generating" yet:
        # the same one call, and a task generating longer than a poll period shows its stage
        # (progress displays, cancel requests that wait for it) long before the lease is due.
        stale = {id(h) for h in check if h.shown_stage != STAGE[h.phase]}
        await asyncio.gather(
            *(
                self._check_cancel(h, h.task, status)
                for h in check
                if h.task and id(h) not in stale
            ),
            *(
                self._renew(h, h.task, status)
                for h in (*renew, *(c for c in check if id(c) in stale))
                if h.task
            ),
        )

    def lease_until(self) -> int:
        """Epoch seconds until which a claim made or renewed now holds the row."""
        return int(self._clock.now().timestamp() + self._cfg.lease_seconds)

    async def _renew(self, held: Held, task: TaskMessage, status: StatusStore) -> None:
        stage = STAGE[held.phase]
        try:
            renewal = await status.renew(
                task.id, held.holder, self.lease_until(), stage, self._clock.now()
            )
        except TaskFailure as exc:
            held.log.warning("could_not_renew_the_task_s_lease", error=str(exc))
            return
        if renewal.held:
            held.shown_stage = stage
            if renewal.cancel_requested and held.phase is not Phase.FINISHING:
                held.log.info("cancellation_requested")
                held.raise_signal("cancel")
            return
        if held.at_runtime:  # another receive took the task over: stop and hand it back
            held.log.warning("lost_the_task_s_lease_interrupting_and_handing_it_back")
            held.leased = False
            held.raise_signal("release")

    @staticmethod
    async def _check_cancel(held: Held, task: TaskMessage, status: StatusStore) -> None:
        try:
            if await status.cancel_requested(task.id):
                held.log.info("cancellation_requested")
                held.raise_signal("cancel")
        except TaskFailure as exc:
            held.log.warning("could_not_read_the_status_row", error=str(exc))
