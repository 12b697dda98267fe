"""Shared state of one sdq runtime EMULATOR server: current knobs, armed faults, counters.

It also owns the timing helper both emulated APIs use to make a generation last exactly the
configured latency while staying interruptible.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sdq_runtime_emulator.knobs import Knobs


class _Banner(logging.LoggerAdapter[logging.Logger]):
    """Marks every emulator log line, whatever formatter the host process uses."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[EMULATOR] {msg}", kwargs


log = _Banner(logging.getLogger("sdq_runtime_emulator"))

Api = Literal["sdwebui", "comfyui", "invokeai"]
EXIT_CODE = 70
POLL_S = 0.05


class GenerationFault(enum.Enum):
    """What an armed knob does to the generation that consumes it."""

    NONE = "none"
    EXECUTION_ERROR = "execution_error"
    HANG = "hang"
    EXIT = "exit"


class Outcome(enum.Enum):
    """How an emulated generation's wait ended."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    DIED = "died"


@dataclass
class ApiStats:
    generations_started: int = 0
    generations_completed: int = 0
    generations_failed: int = 0
    generations_interrupted: int = 0
    interrupts: int = 0
    model_switches: int = 0
    active_generations: int = 0
    peak_active_generations: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Stats:
    sdwebui: ApiStats = field(default_factory=ApiStats)
    comfyui: ApiStats = field(default_factory=ApiStats)
    invokeai: ApiStats = field(default_factory=ApiStats)
    requests: Counter[str] = field(default_factory=Counter)
    injected_failures: int = 0

    def api(self, api: Api) -> ApiStats:
        return {"sdwebui": self.sdwebui, "comfyui": self.comfyui, "invokeai": self.invokeai}[api]

    def to_json(self) -> dict[str, Any]:
        return {
            "sdwebui": self.sdwebui.to_json(),
            "comfyui": self.comfyui.to_json(),
            "invokeai": self.invokeai.to_json(),
            "requests": dict(self.requests),
            "injected_failures": self.injected_failures,
        }


class EmulatorState:
    """Mutable per-server state; lives in the aiohttp app (single event loop, no locks)."""

    def __init__(self, knobs: Knobs, *, allow_process_exit: bool) -> None:
        self.knobs = knobs
        self.allow_process_exit = allow_process_exit
        self.stats = Stats()
        self.not_ready_until = time.monotonic() + knobs.slow_start_s
        self.serial = 0

    def set_knobs(self, knobs: Knobs) -> None:
        if knobs.slow_start_s != self.knobs.slow_start_s:
            self.not_ready_until = time.monotonic() + knobs.slow_start_s
        self.knobs = knobs
        log.info("knobs set: %s", knobs.to_json())

    def ready(self) -> bool:
        return time.monotonic() >= self.not_ready_until

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def take_http_failure(self, *, generation_route: bool) -> int | None:
        """Consume one armed ``http`` failure matching this request; return its status."""
        knobs = self.knobs
        if knobs.fail_next == 0 or knobs.fail_kind != "http":
            return None
        if knobs.fail_scope == "generation" and not generation_route:
            return None
        self.knobs = knobs.updated({"fail_next": knobs.fail_next - 1})
        self.stats.injected_failures += 1
        return knobs.fail_status

    def take_generation_fault(self) -> GenerationFault:
        """Consume the armed fault (exit, then hang, then execution error) of a generation."""
        knobs = self.knobs
        for name, fault in (
            ("exit_next", GenerationFault.EXIT),
            ("hang_next", GenerationFault.HANG),
        ):
            if getattr(knobs, name) > 0:
                self.knobs = knobs.updated({name: getattr(knobs, name) - 1})
                self.stats.injected_failures += 1
                return fault
        if knobs.fail_next > 0 and knobs.fail_kind == "execution_error":
            self.knobs = knobs.updated({"fail_next": knobs.fail_next - 1})
            self.stats.injected_failures += 1
            return GenerationFault.EXECUTION_ERROR
        return GenerationFault.NONE

    def generation_started(self, api: Api) -> None:
        stats = self.stats.api(api)
        stats.generations_started += 1
        stats.active_generations += 1
        stats.peak_active_generations = max(stats.peak_active_generations, stats.active_generations)

    def generation_ended(self, api: Api, outcome: str) -> None:
        stats = self.stats.api(api)
        stats.active_generations -= 1
        if outcome == "completed":
            stats.generations_completed += 1
        elif outcome == "interrupted":
            stats.generations_interrupted += 1
        else:
            stats.generations_failed += 1

    def die(self, drop: Callable[[], None]) -> None:
        """The exit fault: end the process hard, or (in-process) drop the connection(s)."""
        if self.allow_process_exit:
            log.warning("exit fault armed: exiting hard mid-generation (os._exit(%d))", EXIT_CODE)
            logging.shutdown()
            os._exit(EXIT_CODE)
        log.warning("exit fault armed: dropping the connection mid-generation (in-process)")
        drop()


async def pace(
    *,
    deadline: float,
    stop: asyncio.Event,
    fault: GenerationFault,
    steps: int,
    on_step: Callable[[int], Awaitable[None]] | None = None,
    client_gone: Callable[[], bool] = lambda: False,
    die: Callable[[], None] = lambda: None,
) -> Outcome:
    """Wait until ``deadline`` (monotonic) in ``steps`` slices, reporting each finished slice.

    Stops early when ``stop`` is set (interrupt) or ``client_gone()``. A HANG fault waits for
    those only; an EXIT fault calls ``die`` half-way.
    """
    if fault is GenerationFault.HANG:
        while not stop.is_set() and not client_gone():
            await _wait(stop, POLL_S)
        return Outcome.INTERRUPTED
    start = time.monotonic()
    if fault is GenerationFault.EXIT:
        if not await _until(start + max(0.0, deadline - start) / 2, stop, client_gone):
            return Outcome.INTERRUPTED
        die()
        return Outcome.DIED
    steps = max(1, steps)
    slice_s = max(0.0, deadline - start) / steps
    for step in range(1, steps + 1):
        if not await _until(start + slice_s * step, stop, client_gone):
            return Outcome.INTERRUPTED
        if on_step is not None:
            await on_step(step)
    return Outcome.FINISHED


async def _until(moment: float, stop: asyncio.Event, client_gone: Callable[[], bool]) -> bool:
    """Sleep until ``moment``; False as soon as ``stop`` is set or the client is gone."""
    while (left := moment - time.monotonic()) > 0:
        if stop.is_set() or client_gone():
            return False
        await _wait(stop, min(left, POLL_S))
    return not (stop.is_set() or client_gone())


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return
