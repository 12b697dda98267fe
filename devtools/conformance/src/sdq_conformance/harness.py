"""One target of the case table: the local stack (API, queues, real queue agents, S3, status
table, notifications) in front of either the real runtimes or the runtime emulator.

The stack runs on its own event loop in a thread, so the cases are plain synchronous code that
talks to it as a user does: the HTTP API, the S3 objects, the result notifications.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from PIL import Image

from sdq_cli.api import ApiClient
from sdq_conformance.files import FileFacts, check
from sdq_contracts.config import DeploymentConfig
from sdq_contracts.keys import parse_s3_uri, task_suffix
from sdq_contracts.messages import ResultNotification
from sdq_local.processes import ManagedProcess
from sdq_local.stack import LOCAL_CREDENTIALS, LocalStack, StackInfo, StackOptions

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class StackThread:
    """A :class:`LocalStack` on an event loop of its own (a daemon thread)."""

    def __init__(self, cfg: DeploymentConfig, options: StackOptions) -> None:
        self.local = LocalStack(cfg, options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sdq-conformance-stack", daemon=True
        )

    def start(self, within_s: float) -> StackInfo:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.local.start(), self._loop)
        try:
            return future.result(timeout=within_s)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise RuntimeError(f"the local stack did not start within {within_s:.0f} s") from None

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.local.stop(), self._loop).result(timeout=120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def process(self, name: str) -> ManagedProcess:
        for proc in self.local._processes:
            if proc.name == name:
                return proc
        raise KeyError(name)


class RuntimeControl(Protocol):
    """What a case may do to the runtime behind a stack runtime (by its sdq name)."""

    def crash(self, runtime: str) -> None: ...

    def restart(self, runtime: str) -> float: ...

    def set_knobs(self, runtime: str, knobs: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What a user sees of a finished task."""

    status: str
    code: str | None
    permanent: bool | None
    images: tuple[tuple[int, int], ...]
    notifications: tuple[str, ...]  # statuses of the notifications for the task, in order
    message: str = ""
    seconds: float = 0.0
    # The notification's output_url: "out" (the task's .out object), "folder", or other text.
    output_url: str = ""
    # Files the task left on the ComfyUI server's disk (None: not a ComfyUI task).
    leftover_files: int | None = None
    # Every output as the status row describes it (kind, content type, pixels), in output order.
    files: tuple[FileFacts, ...] = ()
    # Where the row, the notification and the stored objects disagree (see sdq_conformance.files).
    file_problems: tuple[str, ...] = ()
    # The contents of the text outputs.
    texts: tuple[str, ...] = ()

    def short(self) -> str:
        parts = [self.status]
        if self.code:
            parts.append(f"{self.code}{'/permanent' if self.permanent else '/transient'}")
        if self.images:
            sizes = {f"{w}x{h}" for w, h in self.images}
            parts.append(f"{len(self.images)}x{'/'.join(sorted(sizes))}")
        if any(f[:2] != ("image", "image/png") for f in self.files):
            parts.append("files:" + ",".join(sorted(f.short() for f in self.files)))
        notes = ",".join(self.notifications) or "none"
        parts.append(f"notified:{notes}")
        if self.output_url and self.output_url != "out":
            parts.append(f"output_url:{self.output_url}")
        if self.leftover_files:
            parts.append(f"leftover_files:{self.leftover_files}")
        return " ".join(parts)


@dataclass
class Target:
    name: str  # "real" | "emulator"
    stack: StackThread
    info: StackInfo
    control: RuntimeControl
    http_base: str  # the suite's input server, reachable by the agent
    # Files on the ComfyUI server's disk (input/output/temp) for a stack runtime.
    files: Callable[[str], frozenset[str]] = lambda _runtime: frozenset()
    _seen: dict[str, list[ResultNotification]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        session = boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.info.region,
        )
        self.s3 = session.client("s3", endpoint_url=self.info.aws_endpoint)
        self.sqs = session.client("sqs", endpoint_url=self.info.aws_endpoint)
        self.api = ApiClient(self.info.api_url, self.info.api_key)

    # --- inputs ------------------------------------------------------------------------------

    def put_input(self, key: str, data: bytes) -> str:
        bucket = self.info.resources.output_bucket
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")
        return f"s3://{bucket}/{key}"

    # --- a task ------------------------------------------------------------------------------

    def submit(self, path: str, body: dict[str, Any]) -> str:
        accepted = self.api.submit(path, body)
        return str(accepted["id_task"])

    def record(self, task_id: str) -> dict[str, Any]:
        return self.api.status(task_id)

    def wait(
        self, task_id: str, done: Callable[[dict[str, Any]], bool], within_s: float, what: str
    ) -> dict[str, Any]:
        """Poll the task's status row (as `sdq` does) until ``done``; bounded."""
        deadline = time.monotonic() + within_s
        record: dict[str, Any] = {}
        while time.monotonic() < deadline:
            record = self.record(task_id)
            if done(record):
                return record
            time.sleep(0.25)
        raise AssertionError(
            f"[{self.name}] task {task_id} not {what} after {within_s:.0f} s: {record}"
        )

    def cancel(self, task_id: str) -> None:
        self.api.cancel(task_id)

    def notifications(self, task_id: str, within_s: float = 30.0) -> list[ResultNotification]:
        """The task's result notifications: waits for a terminal one, then takes what else is
        already there (a duplicate would show up here)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if any(n.status.value in TERMINAL for n in self._seen.get(task_id, [])):
                self._drain(wait_s=1)
                break
            self._drain(wait_s=2)
        return list(self._seen.get(task_id, []))

    def _drain(self, wait_s: int) -> None:
        queue = self.info.results_queue_url
        answer = self.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        )
        for message in answer.get("Messages", []):
            note = ResultNotification.model_validate_json(message["Body"])
            self._seen.setdefault(note.id, []).append(note)
            self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    def read_object(self, url: str) -> tuple[bytes, str]:
        """An output's bytes and its S3 content type."""
        bucket, key = parse_s3_uri(url)
        answer = self.s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), str(answer.get("ContentType", ""))

    def outcome(self, task_id: str, record: dict[str, Any], seconds: float) -> Outcome:
        notes = self.notifications(task_id)
        error = record.get("error") or {}
        location = str(record.get("output_location") or "")
        output_url = ""
        if notes and record.get("status") == "completed":
            url = notes[-1].output_url
            output_url = (
                "out"
                if url == f"{location}/{task_id}-{task_suffix(task_id)}.out"
                else "folder"
                if url == location
                else url
            )
        completed = [n for n in notes if n.status.value == "completed"]
        checked = check(record, completed[-1].files if completed else None, self.read_object)
        done = record.get("status") == "completed"
        return Outcome(
            status=str(record.get("status")),
            code=error.get("code"),
            permanent=error.get("permanent"),
            images=checked.images,
            files=checked.facts,
            file_problems=checked.problems if done else (),
            texts=checked.texts,
            notifications=tuple(n.status.value for n in notes),
            message=str(error.get("message") or ""),
            seconds=seconds,
            output_url=output_url,
        )


# --- runtime control -------------------------------------------------------------------------


class EmulatorControl:
    """The emulator behind each stack runtime: its knobs, and its process to crash/restart."""

    def __init__(self, stack: StackThread, urls: Mapping[str, str]) -> None:
        self._stack = stack
        self._urls = urls

    def crash(self, runtime: str) -> None:
        proc = self._stack.process(f"runtime-emulator-{runtime}")
        if proc.pid is None:
            raise RuntimeError(f"the emulator of {runtime} is not running: nothing to crash")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.stop(grace=5)

    def restart(self, runtime: str) -> float:
        proc = self._stack.process(f"runtime-emulator-{runtime}")
        started = time.monotonic()
        proc.start()
        _wait_http(f"{self._urls[runtime]}/emulator/knobs", 60)
        return time.monotonic() - started

    def set_knobs(self, runtime: str, knobs: Mapping[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - loopback emulator
            f"{self._urls[runtime]}/emulator/knobs",
            data=json.dumps(dict(knobs)).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            if resp.status != 200:
                raise RuntimeError(f"emulator knobs of {runtime}: HTTP {resp.status}")


def _wait_http(url: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - loopback
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {within_s:.0f} s")


# --- inputs the cases use ----------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """One input picture in every form a request can carry it."""

    png: bytes
    s3_uri: str
    http_url: str

    @property
    def b64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    @property
    def data_uri(self) -> str:
        return f"data:image/png;base64,{self.b64}"


def input_png(size: tuple[int, int] = (64, 64)) -> bytes:
    """A deterministic gradient picture (no noise: it must encode to a stable PNG)."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [
            (x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height))
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def unique_id(case: str, target: str) -> str:
    return f"{case}-{target}-{uuid.uuid4().hex[:6]}"[:64]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class FilesOf(Protocol):
    def __call__(self, runtime: str) -> frozenset[str]: ...


def files_under(roots: list[Path]) -> frozenset[str]:
    """Every file below ``roots`` (ComfyUI's input/output/temp folders)."""
    found: set[str] = set()
    for root in roots:
        if root.is_dir():
            found.update(str(p) for p in root.rglob("*") if p.is_file())
    return frozenset(found)
