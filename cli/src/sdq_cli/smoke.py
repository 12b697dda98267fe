"""`sdq smoke` (`make smoke`): prove a deployment works end to end after `make apply`.

One small task per configured runtime goes through the deployed API with the configured key;
the command follows each through its status to the end, checks that every output object is in
S3 (non-empty), reports the timings the status record allows (queue wait, which includes node
and pod start when the runtime was scaled to zero, and generation), deletes the task's objects
and exits non-zero naming the first stage that failed:

  submit      the API refused or did not answer the task
  queue       nothing picked the task up in time (scaling, node start, image pull, agent)
  generation  the runtime failed the task, or did not finish it in time
  outputs     the status says completed but an output object is missing or empty
  cleanup     the task's objects could not be deleted
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sdq_cli.api import ApiClient
from sdq_cli.build import Submission, TaskFlags, build
from sdq_cli.errors import CliError, Exit
from sdq_contracts.config import DeploymentConfig, RuntimeConfig, RuntimeType
from sdq_contracts.keys import parse_s3_uri

STAGES = ("submit", "queue", "generation", "outputs", "cleanup")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_WORKFLOW = Path("tests/examples/comfyui-txt2img-api.json")


class ObjectStore(Protocol):
    """The S3 calls smoke makes (a boto3 S3 client satisfies it)."""

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...

    def list_objects_v2(self, *, Bucket: str, Prefix: str) -> dict[str, Any]: ...

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class SmokeTask:
    runtime: str
    task_id: str
    record: dict[str, Any] = field(default_factory=dict)
    failed_stage: str | None = None
    reason: str = ""
    objects: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.record.get("status", "submitted"))

    def fail(self, stage: str, reason: str) -> None:
        if self.failed_stage is None:
            self.failed_stage, self.reason = stage, reason


def submission(runtime: RuntimeConfig, task_id: str, workflow: Path) -> Submission:
    """The smallest task that exercises a runtime for real."""
    if runtime.type is RuntimeType.COMFYUI:
        flags = TaskFlags(
            runtime=runtime.name, task_id=task_id, prefix="smoke", workflow=str(workflow)
        )
    else:
        flags = TaskFlags(
            runtime=runtime.name,
            task_id=task_id,
            prefix="smoke",
            prompt="sdq smoke test: a lighthouse at dawn",
            width=512,
            height=512,
            steps=8,
            seed=1,
        )
    return build(flags, {})


def _seconds(record: dict[str, Any], start: str, end: str) -> float | None:
    if not record.get(start) or not record.get(end):
        return None
    begin = datetime.fromisoformat(str(record[start]))
    return (datetime.fromisoformat(str(record[end])) - begin).total_seconds()


def timings(record: dict[str, Any]) -> dict[str, float | None]:
    """Seconds between the status record's timestamps."""
    return {
        "queue_wait": _seconds(record, "created_at", "started_at"),
        "generation": _seconds(record, "started_at", "finished_at"),
        "total": _seconds(record, "created_at", "finished_at"),
    }


def wait_for(
    api: ApiClient,
    tasks: Sequence[SmokeTask],
    timeout_s: float,
    poll_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll every task's status until all are terminal or the time is up; a task still
    queued then failed at `queue`, one still running at `generation`."""
    deadline = clock() + timeout_s
    while True:
        pending = [t for t in tasks if t.failed_stage is None and t.state not in TERMINAL]
        for task in pending:
            task.record = api.status(task.task_id)
        pending = [t for t in pending if t.state not in TERMINAL]
        if not pending:
            break
        if clock() >= deadline:
            for task in pending:
                stage = "queue" if task.state == "queued" else "generation"
                task.fail(stage, f"still {task.state} after {timeout_s:.0f}s")
            break
        sleep(poll_s)
    for task in tasks:
        if task.failed_stage is None and task.state != "completed":
            error = task.record.get("error") or {}
            detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            task.fail("generation", f"task {task.state}" + (f" ({detail})" if detail else ""))


def check_outputs(store: ObjectStore, task: SmokeTask) -> None:
    outputs = [u for u in task.record.get("outputs", []) if isinstance(u, str)]
    if not outputs:
        task.fail("outputs", "completed without any output object")
        return
    for url in outputs:
        bucket, key = parse_s3_uri(url)
        try:
            size = int(store.head_object(Bucket=bucket, Key=key).get("ContentLength", 0))
        except Exception as exc:  # botocore: missing object, access denied
            task.fail("outputs", f"{url}: {exc}")
            return
        if size <= 0:
            task.fail("outputs", f"{url} is empty")
            return


def clean_up(store: ObjectStore, task: SmokeTask) -> None:
    """Delete every object under the task's output location (images, metadata)."""
    location = task.record.get("output_location")
    if not location:
        return
    bucket, prefix = parse_s3_uri(str(location))
    try:
        listed = store.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        keys = [str(o["Key"]) for o in listed.get("Contents", [])]
        if keys:
            store.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        task.objects = [f"s3://{bucket}/{k}" for k in keys]
    except Exception as exc:  # botocore
        task.fail("cleanup", f"cannot delete s3://{bucket}/{prefix}: {exc}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def run_smoke(
    cfg: DeploymentConfig,
    api: ApiClient,
    store: ObjectStore,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    workflow: Path = DEFAULT_WORKFLOW,
    say: Callable[[str], None] = print,
) -> int:
    run_id = uuid.uuid4().hex[:8]
    tasks: list[SmokeTask] = []
    say(f"==> smoke test of {len(cfg.runtimes)} runtime(s) at {api.url}")
    for runtime in cfg.runtimes:
        task = SmokeTask(runtime.name, f"smoke-{runtime.name}-{run_id}")
        tasks.append(task)
        try:
            sub = submission(runtime, task.task_id, workflow)
            accepted = api.submit(sub.path, sub.body)
            task.record = {"status": "queued"}
            say(f"    submitted {accepted['id_task']} to {runtime.name}")
        except CliError as exc:
            task.fail("submit", exc.message)
    wait_for(api, tasks, timeout_s, poll_s)
    for task in tasks:
        if task.failed_stage is None:
            check_outputs(store, task)
        if task.record.get("output_location"):
            clean_up(store, task)
    say(f"    {'runtime':<16} {'result':<20} {'queue wait':>10} {'generation':>10} {'total':>8}")
    for task in tasks:
        times = timings(task.record)
        result = "ok" if task.failed_stage is None else f"FAILED at {task.failed_stage}"
        say(
            f"    {task.runtime:<16} {result:<20} {_fmt(times['queue_wait']):>10} "
            f"{_fmt(times['generation']):>10} {_fmt(times['total']):>8}"
        )
    say(
        "    (queue wait includes node start and image pull when a runtime was scaled to zero;"
        " the status record does not separate them)"
    )
    failed = [t for t in tasks if t.failed_stage is not None]
    for task in failed:
        say(f"smoke FAILED: runtime {task.runtime}, stage {task.failed_stage}: {task.reason}")
    if failed:
        return int(Exit.TASK_FAILED)
    say("==> smoke passed: every runtime completed a task, outputs checked and deleted")
    return int(Exit.OK)
