"""Settled messages are deleted in batches (``DeleteMessageBatch``, up to ten per call): a batch
goes when it is full or when its oldest message has waited ``max_delay``; at once when the
worker stops, the queue runs dry or nothing else is in flight (no batch to wait for). The caller of :meth:`BatchDeleter.delete` waits for its own
message's answer, so it keeps the message in the registry (and under the visibility heartbeat)
until SQS deleted it, and learns when it could not be deleted (it reappears: the status row's
``settled_by`` rule decides what its redelivery announces).

A message that published its task's notification is deleted with a mark: before the
``DeleteMessageBatch``, one status write (:meth:`StatusStore.mark_announced`) records
``announced`` on the row of every such message in the batch, so a second SQS copy of the same
message (same ``MessageId``) is deleted silently instead of announcing again. A failed mark
never holds the deletes back: it only leaves that rare duplicate free to announce twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from sdq_queue_agent.domain.clock import Clock
from sdq_queue_agent.domain.model import ReceivedMessage
from sdq_queue_agent.domain.ports import MAX_MARKS, StatusStore, TaskQueue
from sdq_queue_agent.errors import AwsError, TaskFailure

MAX_BATCH = 10  # SQS's limit per DeleteMessageBatch
_log = structlog.get_logger("sdq_queue_agent.worker")


@dataclass
class _Entry:
    message: ReceivedMessage
    done: asyncio.Future[None]
    since: float
    mark: str | None = None  # the task id whose row gets ``announced`` (this message published)
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class BatchDeleter:
    def __init__(
        self,
        queue: TaskQueue,
        clock: Clock,
        *,
        max_delay: float,
        status: StatusStore | None = None,
        attempts: int = 3,
        idle: Callable[[], bool] = lambda: False,
    ) -> None:
        """``idle``: nothing else is in flight (no task preparing, prepared or generating), so
        nothing will fill the batch soon: a delete then goes at once."""
        self._queue = queue
        self._status = status
        self._idle = idle
        self._clock = clock
        self._max_delay = max_delay
        self._attempts = attempts
        self._pending: list[_Entry] = []
        self._wake = asyncio.Event()
        self._urgent = False  # stopping: no more waiting to fill batches
        self._flush_once = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def delete(self, message: ReceivedMessage, *, announced: str | None = None) -> None:
        """Wait until the message is deleted; AwsError when SQS would not delete it.
        ``announced``: the id of the task this message announced; its row is marked first."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(message, done, self._clock.monotonic(), mark=announced))
        if self._idle():
            self._flush_once = True
        self._wake.set()
        await done

    def flush(self) -> None:
        """Send what is pending now (the queue ran dry: nothing will fill the batch soon).
        With nothing pending it does nothing: a later delete must not go alone because the
        queue was dry before it."""
        if self._pending:
            self._flush_once = True
            self._wake.set()

    def stop_waiting(self) -> None:
        """From now on every message is sent at once (drain, stop)."""
        self._urgent = True
        self._wake.set()

    async def run(self) -> None:
        """Forever (cancelled by the worker once nothing is held)."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._pending[0].since + self._max_delay - self._clock.monotonic()
            ready = len(self._pending) >= MAX_BATCH or self._urgent or self._flush_once
            if not ready and wait > 0:
                await self._wait(wait)
                continue
            self._flush_once = False
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._send(batch)

    async def _wait(self, seconds: float) -> None:
        """Until the delay runs out or something arrives."""
        self._wake.clear()
        woken = asyncio.ensure_future(self._wake.wait())
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (woken, timer):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    async def _mark(self, batch: list[_Entry]) -> None:
        """Mark the rows of the batch's announced tasks in one write (each entry once: an entry
        retried after a refused delete was marked already)."""
        marks: dict[str, str] = {}
        for entry in batch:
            if entry.mark is not None and entry.mark not in marks:
                marks[entry.mark] = entry.message.message_id
            entry.mark = None
        if self._status is None or not marks:
            return
        items = list(marks.items())[:MAX_MARKS]
        try:
            marked = await self._status.mark_announced(items)
        except TaskFailure as exc:
            _log.warning("could_not_mark_announced_tasks", tasks=len(items), cause=str(exc))
            return
        except Exception:  # a bug must not stop the deletes
            _log.exception("unexpected_error_marking_announced_tasks")
            return
        if len(marked) < len(items):
            _log.warning(
                "announced_mark_refused", refused=sorted(t for t, _ in items if t not in marked)
            )

    async def _send(self, batch: list[_Entry]) -> None:
        await self._mark(batch)
        try:
            refused = await self._queue.delete_batch([e.message for e in batch])
        except TaskFailure as exc:  # the whole call failed (after the SDK's own retries)
            for entry in batch:
                _settle(entry, AwsError(f"DeleteMessageBatch failed: {exc}"))
            return
        except Exception as exc:  # a bug must not stop every later delete
            _log.exception("unexpected_error_deleting_a_batch")
            for entry in batch:
                _settle(entry, AwsError(f"DeleteMessageBatch failed: {type(exc).__name__}"))
            return
        retry: list[_Entry] = []
        for entry in batch:
            refusal = refused.get(entry.message.receipt_handle)
            if refusal is None:
                _settle(entry, None)
                continue
            entry.attempts += 1
            entry.errors.append(refusal.code)
            if refusal.retryable and entry.attempts < self._attempts:
                retry.append(entry)
                continue
            _log.warning(
                "could_not_delete_a_settled_message",
                message_id=entry.message.message_id,
                codes=entry.errors,
            )
            _settle(entry, AwsError(f"DeleteMessageBatch refused the message: {refusal.code}"))
        if retry:  # at the front, due at once: the next round sends them again
            for entry in retry:
                entry.since = float("-inf")
            self._pending = retry + self._pending
            self._wake.set()


def _settle(entry: _Entry, error: Exception | None) -> None:
    if entry.done.done():  # its waiter was cancelled
        return
    if error is None:
        entry.done.set_result(None)
    else:
        entry.done.set_exception(error)
