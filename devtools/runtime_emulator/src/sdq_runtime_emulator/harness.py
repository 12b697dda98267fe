"""Ways to run the sdq runtime EMULATOR from tests and tools.

- :func:`running_emulator` — in-process, on a free 127.0.0.1 port, as an async context.
- :class:`EmulatorProcess` — a ``python -m sdq_runtime_emulator`` subprocess (for tests that
  need the runtime process to die), with a bounded readiness wait.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sdq_runtime_emulator.app import STATE, create_app
from sdq_runtime_emulator.knobs import Knobs, coerce_knobs
from sdq_runtime_emulator.state import EmulatorState, log

SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RunningEmulator:
    url: str
    app: web.Application

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE]


@asynccontextmanager
async def running_emulator(
    *, data_dir: str | Path | None = None, **knobs: Any
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator in this event loop on a free 127.0.0.1 port; yields ``.url``."""
    app = create_app(Knobs(**coerce_knobs(knobs)), data_dir=data_dir)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningEmulator(f"http://{host}:{port}", app)
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def knob_flags(knobs: dict[str, Any]) -> list[str]:
    """Command-line flags for knob values (``generation_latency_s`` → ``--generation-latency-s``)."""
    flags: list[str] = []
    for name, value in coerce_knobs(knobs).items():
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


class EmulatorProcess:
    """The emulator as a child process; the exit fault really ends it (``os._exit``)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        ready_timeout_s: float = 20.0,
        **knobs: Any,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout_s = ready_timeout_s
        self._workdir = tempfile.TemporaryDirectory(prefix="sdq-emulator-proc-")
        self.log_path = Path(self._workdir.name) / "emulator.log"
        self._args = [
            sys.executable,
            "-m",
            "sdq_runtime_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *knob_flags(knobs),
        ]
        if data_dir is not None:
            self._args += ["--data-dir", str(data_dir)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmulatorProcess:
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
                self._args, stdout=log_file, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            log.debug("waiting for %s to be ready (attempt %d)", self.url, attempt)
            if self.returncode is not None:
                raise RuntimeError(
                    f"emulator exited with {self.returncode} before ready:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/emulator/knobs", timeout=1.0):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(
            f"emulator not ready on {self.url} after {attempt} attempts "
            f"({self.ready_timeout_s}s):\n{self.output()}"
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def wait_exit(self, timeout_s: float) -> int:
        """The exit code once the process has ended (raises TimeoutError otherwise)."""
        if self._process is None:
            raise RuntimeError("emulator process not started")
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise TimeoutError(f"emulator still running after {timeout_s}s") from error

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Terminate (then kill) the process if it still runs; return its exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        return process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
