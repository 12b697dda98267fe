"""Child processes of the local stack: started in their own session, logged to a file, checked
for readiness with a bounded loop, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


class ProcessFailed(RuntimeError):
    pass


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - argv built by the stack, no shell
                list(self.argv),
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def wait_ready(self, within_s: float, session: aiohttp.ClientSession) -> None:
        """Poll ready_url until it answers 2xx; fail early if the process exits."""
        if self.ready_url is None:
            return
        deadline = time.monotonic() + within_s
        attempt = 0
        last = "no answer yet"
        while time.monotonic() < deadline:
            attempt += 1
            if not self.alive():
                raise ProcessFailed(f"{self.name} exited during start-up; its log:\n{self.tail()}")
            try:
                async with session.get(self.ready_url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status < 300:
                        return
                    last = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(min(0.1 * attempt, 0.5))
        raise ProcessFailed(
            f"{self.name} was not ready after {within_s:.0f}s ({last}); its log:\n{self.tail()}"
        )

    def stop(self, grace: float = 10.0) -> int | None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=5)
        except ProcessLookupError:
            return proc.poll()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
