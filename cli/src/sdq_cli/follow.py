"""Follow tasks to the end with a progress display, then fetch their images."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sdq_cli.api import ApiClient
from sdq_cli.errors import CliError, Exit
from sdq_cli.target import Target
from sdq_contracts.keys import parse_s3_uri

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class Tracked:
    task_id: str
    runtime: str
    started: float = field(default_factory=time.monotonic)
    state: str = "submitted"
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


class Progress:
    """One line per state change: `  +1.2s  task-id  queued → running`."""

    def __init__(self, out: TextIO | None = None, enabled: bool = True) -> None:
        self._out = out
        self._enabled = enabled

    def __call__(self, task: Tracked, old: str, new: str) -> None:
        if self._enabled:
            elapsed = time.monotonic() - task.started
            line = f"  +{elapsed:6.2f}s  {task.task_id}  {old} → {new}"
            print(line, file=self._out or sys.stderr, flush=True)


def follow(
    api: ApiClient,
    tasks: Sequence[Tracked],
    within_s: float,
    on_change: Callable[[Tracked, str, str], None],
    poll_s: float = 0.5,
) -> None:
    """Poll each task's status until all are terminal; TIMEOUT after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        for task in tasks:
            if task.done:
                continue
            record = api.status(task.task_id)
            new = str(record.get("status", "unknown"))
            if new == "running" and record.get("stage"):
                new = str(record["stage"])  # generating, uploading
            if new != task.state:
                on_change(task, task.state, new)
                task.state = new
            task.record = record
            if new in TERMINAL:
                task.seconds = time.monotonic() - task.started
        if all(t.done for t in tasks):
            return
        if time.monotonic() >= deadline:
            waiting = ", ".join(f"{t.task_id} ({t.state})" for t in tasks if not t.done)
            raise CliError(f"gave up after {within_s:.0f}s waiting for: {waiting}", Exit.TIMEOUT)
        time.sleep(poll_s)


def download(target: Target, task: Tracked, out_dir: Path) -> list[Path]:
    """Fetch every output image of a completed task to out_dir/<task id>/."""
    urls = [u for u in task.record.get("outputs", []) if isinstance(u, str)]
    if not urls:
        return []
    s3 = target.client("s3")
    folder = out_dir / task.task_id
    folder.mkdir(parents=True, exist_ok=True)
    for url in urls:
        bucket, key = parse_s3_uri(url)
        path = folder / key.rsplit("/", 1)[-1]
        try:
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:  # botocore errors: credentials, access, missing object
            raise CliError(f"cannot download {url}: {exc}", Exit.ERROR) from None
        task.files.append(path)
    return task.files
