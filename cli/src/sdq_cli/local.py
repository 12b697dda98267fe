"""`sdq local up` / `down`: the local stack in the background (python -m sdq_local serve)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sdq_cli.errors import CliError, Exit

STACK_FILE = "stack.json"


def _alive(pid: int) -> bool:
    try:  # reap it first if it is our own child (demo starts and stops the stack itself)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STACK_FILE
    if not path.is_file():
        return None
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not _alive(int(info.get("pid", 0))):
        path.unlink(missing_ok=True)  # a stack that died without cleaning up
        return None
    return info


def up(  # noqa: PLR0917 - mirrors the `sdq local up` flags one to one
    state_dir: Path,
    config: str,
    latency_s: float,
    runtime_urls: list[str],
    api_key: str | None = None,
    within_s: float = 120.0,
) -> tuple[dict[str, Any], bool]:
    """Start the stack unless it runs already; (its description, whether it was started now)."""
    existing = running(state_dir)
    if existing is not None:
        return existing, False
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "sdq_local",
        "serve",
        "--config",
        config,
        "--state-dir",
        str(state_dir),
        "--latency",
        str(latency_s),
    ]
    for pair in runtime_urls:
        argv += ["--runtime-url", pair]
    if api_key:
        argv += ["--api-key", api_key]
    with (logs / "stack.log").open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (logs / "stack.log").read_text(errors="replace").splitlines()[-15:]
            raise CliError("the local stack failed to start:\n" + "\n".join(tail), Exit.ERROR)
        info = running(state_dir)
        if info is not None:
            return info, True
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise CliError(
        f"the local stack was not ready within {within_s:.0f}s; see {logs}", Exit.TIMEOUT
    )


def down(state_dir: Path, within_s: float = 90.0) -> bool:
    """Stop the stack; False if none was running."""
    info = running(state_dir)
    if info is None:
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    (state_dir / STACK_FILE).unlink(missing_ok=True)
    return True
