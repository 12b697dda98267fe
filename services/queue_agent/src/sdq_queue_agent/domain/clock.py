"""Time as a port: the worker reads wall and monotonic time and sleeps through one object, so a
test can drive the whole delivery policy without waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time (UTC) for status rows and notifications."""
        ...

    def monotonic(self) -> float:
        """Seconds for durations, deadlines and heartbeats."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
