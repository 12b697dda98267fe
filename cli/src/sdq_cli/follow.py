"""Follow tasks to the end with a progress display, then fetch their outputs."""

from __future__ import annotations

import shutil
import sys
import time
import urllib.error
import urllib.request
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


def output_links(record: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(s3 URI, download link or None)`` of every output of a status answer, in order. The
    status answer signs fresh links on each call; an output it lists without one (an API that
    could not sign) is fetched from S3 with the profile's credentials instead."""
    links: dict[str, str] = {}
    for entry in record.get("files") or []:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            link = entry.get("download_url")
            if isinstance(link, str) and link.startswith(("https://", "http://")):
                links[entry["url"]] = link
    urls = [u for u in record.get("outputs", []) if isinstance(u, str)]
    return [(url, links.get(url)) for url in urls]


def _fetch_link(link: str, url: str, path: Path, timeout_s: float) -> None:
    """GET a pre-signed link into ``path`` (streamed). Errors name the s3:// URI, never the link
    (it is a bearer credential until it expires)."""
    try:
        with (
            urllib.request.urlopen(link, timeout=timeout_s) as resp,  # noqa: S310 - https link
            path.open("wb") as out,
        ):
            shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        hint = " (expired? `sdq status` signs fresh links)" if exc.code == 403 else ""
        raise CliError(
            f"cannot download {url} through its download link: HTTP {exc.code}{hint}", Exit.ERROR
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot download {url} through its download link: {reason}", Exit.ERROR
        ) from None


def download(target: Target, task: Tracked, out_dir: Path, timeout_s: float = 300.0) -> list[Path]:
    """Fetch every output of a completed task to out_dir/<task id>/: through its pre-signed
    download link (no AWS credentials needed), else from S3 with the profile's credentials."""
    entries = output_links(task.record)
    if not entries:
        return []
    folder = out_dir / task.task_id
    folder.mkdir(parents=True, exist_ok=True)
    s3: Any = None
    for url, link in entries:
        bucket, key = parse_s3_uri(url)
        path = folder / key.rsplit("/", 1)[-1]
        if link is not None:
            _fetch_link(link, url, path, timeout_s)
        else:
            s3 = s3 or target.client("s3")
            try:
                path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except Exception as exc:  # botocore errors: credentials, access, missing object
                raise CliError(f"cannot download {url}: {exc}", Exit.ERROR) from None
        task.files.append(path)
    return task.files
