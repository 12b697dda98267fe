"""The one readiness mechanism: ping the runtime until it answers, each attempt logged.

Used at start-up (bounded by the readiness timeout) and by the worker when the runtime went
away mid-run (until it answers again or the agent stops)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from sdq_queue_agent.domain.ports import Runtime
from sdq_queue_agent.errors import TaskFailure

_log = structlog.get_logger("sdq_queue_agent")


async def wait_for_runtime(
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    interval: float,
    give_up_after: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """True once ``runtime.ping()`` succeeds; False when ``stop`` is set or the time limit
    (``give_up_after`` seconds; None: no limit) pass first. Waits ``interval`` between attempts, waking early on stop."""
    deadline = None if give_up_after is None else clock() + give_up_after
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            await runtime.ping()
        except TaskFailure as exc:
            left = None if deadline is None else deadline - clock()
            _log.warning(
                "runtime_not_ready",
                attempt=attempt,
                error=exc.message,
                seconds_left=None if left is None else round(left, 1),
            )
            if left is not None and left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), interval if left is None else min(interval, left)
                )
            continue
        _log.info("runtime_ready", attempt=attempt)
        return True
    return False
