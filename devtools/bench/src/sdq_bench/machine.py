"""What the benchmark reads from Linux about its processes: CPU time, peak RSS, per-core busy
time, and pinning a process tree to cores."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, float]:
    """Peak RSS (MB, VmHWM) and CPU seconds (user + system, all threads) of a live process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, cpu_seconds(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def core_busy(stat_text: str | None = None) -> dict[int, float]:
    """Busy CPU seconds of every core since boot (everything but idle and iowait)."""
    text = stat_text if stat_text is not None else Path("/proc/stat").read_text()
    out: dict[int, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        values = [int(v) for v in rest.split()]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        out[int(name[3:])] = (sum(values[:8]) - idle) / TICKS
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in _tasks(current):
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children if int(c) not in found)
    return found


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin_tree(pid: int, cores: Iterable[int]) -> None:
    """Pin every thread of ``pid`` and of its descendants to ``cores`` (new threads inherit)."""
    mask = set(cores)
    for proc in descendants(pid):
        for task in _tasks(proc) or [proc]:
            try:
                os.sched_setaffinity(task, mask)
            except OSError:
                continue  # exited meanwhile


@dataclass(frozen=True)
class CoreSplit:
    """Which cores the agent gets and which the emulator side (moto, proxy, runtime emulator,
    the benchmark itself) gets; both None when the machine has a single usable core."""

    agent: frozenset[int] | None
    emulator: frozenset[int] | None

    @property
    def pinned(self) -> bool:
        return self.agent is not None


def split_cores(available: Iterable[int], enabled: bool = True) -> CoreSplit:
    """The first usable core for the agent, the others for the emulator side."""
    cores = sorted(available)
    if not enabled or len(cores) < 2:
        return CoreSplit(None, None)
    return CoreSplit(frozenset(cores[:1]), frozenset(cores[1:]))
