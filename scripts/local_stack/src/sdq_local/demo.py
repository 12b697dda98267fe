"""Drive the local stack like a client: submit through the HTTP API, follow the task to its
notification, download its images."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from PIL import Image

from sdq_contracts.keys import parse_s3_uri
from sdq_contracts.messages import ResultNotification
from sdq_local.stack import LOCAL_CREDENTIALS, StackInfo


@dataclass
class TaskRun:
    task_id: str
    runtime: str
    submitted_at: float
    accepted_s: float
    notification: ResultNotification | None = None
    finished_at: float | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.submitted_at


class LocalClient:
    def __init__(self, info: StackInfo, http: aiohttp.ClientSession) -> None:
        self.info = info
        self.http = http
        session = boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=info.region,
        )
        self.s3 = session.client("s3", endpoint_url=info.aws_endpoint)
        self.sqs = session.client("sqs", endpoint_url=info.aws_endpoint)

    async def submit(self, path: str, body: dict[str, Any]) -> TaskRun:
        started = time.monotonic()
        async with self.http.post(
            self.info.api_url + path,
            json=body,
            headers={"x-api-key": self.info.api_key},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            answer = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"the API refused the task ({resp.status}): {answer}")
        return TaskRun(
            task_id=answer["id_task"],
            runtime=answer.get("runtime") or answer.get("sd_model_checkpoint", ""),
            submitted_at=started,
            accepted_s=time.monotonic() - started,
        )

    async def status(self, task_id: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.info.api_url}/v1alpha2/tasks/{task_id}",
            headers={"x-api-key": self.info.api_key},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            data: dict[str, Any] = await resp.json()
            return data

    async def wait_for(
        self,
        runs: list[TaskRun],
        within_s: float,
        on_status: Callable[[TaskRun, str], None] | None = None,
    ) -> None:
        """Read notifications until every run has one (bounded by `within_s`)."""
        pending = {run.task_id: run for run in runs}
        deadline = time.monotonic() + within_s
        last_status: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            response = await asyncio.to_thread(
                self.sqs.receive_message,
                QueueUrl=self.info.results_queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
            )
            for msg in response.get("Messages", []):
                note = ResultNotification.model_validate_json(msg["Body"])
                await asyncio.to_thread(
                    self.sqs.delete_message,
                    QueueUrl=self.info.results_queue_url,
                    ReceiptHandle=msg["ReceiptHandle"],
                )
                run = pending.pop(note.id, None)
                if run is not None:
                    run.notification = note
                    run.finished_at = time.monotonic()
                    if on_status:
                        on_status(run, note.status.value)
            if on_status:
                for run in pending.values():
                    state = (await self.status(run.task_id)).get("status", "?")
                    if last_status.get(run.task_id) != state:
                        last_status[run.task_id] = state
                        on_status(run, state)
        if pending:
            raise TimeoutError(f"no notification within {within_s:.0f}s for: {', '.join(pending)}")

    def _read_object(self, bucket: str, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    async def download(self, run: TaskRun, outputs: Path) -> list[Path]:
        if run.notification is None:
            return []
        target = outputs / run.task_id
        target.mkdir(parents=True, exist_ok=True)
        for url in run.notification.image_url:
            bucket, key = parse_s3_uri(url)
            body = await asyncio.to_thread(self._read_object, bucket, key)
            path = target / key.rsplit("/", 1)[-1]
            path.write_bytes(body)
            run.files.append(path)
        return run.files


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(io.BytesIO(path.read_bytes())) as img:
        return img.size


def load_example(repo_root: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (repo_root / "tests" / "examples" / f"{name}.json").read_text()
    )
    return data
