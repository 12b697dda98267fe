"""`sdq smoke`'s stage verdicts and timings with a fake API, store and clock."""

from __future__ import annotations

from typing import Any

import pytest

from sdq_cli.smoke import SmokeTask, check_outputs, clean_up, timings, wait_for

pytestmark = pytest.mark.unit


class FakeApi:
    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records

    def status(self, task_id: str) -> dict[str, Any]:
        return self.records[task_id]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_task_never_picked_up_fails_at_queue_a_running_one_at_generation() -> None:
    api = FakeApi(
        {
            "a": {"status": "queued"},
            "b": {"status": "running", "stage": "generating"},
            "c": {"status": "completed", "outputs": ["s3://out/smoke/c/1.png"]},
            "d": {"status": "failed", "error": {"code": "unknown_model", "message": "no x"}},
        }
    )
    tasks = [SmokeTask("r", name) for name in "abcd"]
    clock = Clock()
    wait_for(api, tasks, 30, 1, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    verdicts = {t.task_id: (t.failed_stage, t.reason) for t in tasks}
    assert verdicts == {
        "a": ("queue", "still queued after 30s"),
        "b": ("generation", "still running after 30s"),
        "c": (None, ""),
        "d": ("generation", "task failed (unknown_model: no x)"),
    }
    assert clock.now == 30


class FakeStore:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.deleted: list[str] = []

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.sizes:
            raise KeyError(f"NoSuchKey {Key}")
        return {"ContentLength": self.sizes[Key]}

    def list_objects_v2(self, *, Bucket: str, Prefix: str) -> dict[str, Any]:
        return {"Contents": [{"Key": k} for k in self.sizes if k.startswith(Prefix)]}

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        self.deleted += [o["Key"] for o in Delete["Objects"]]
        return {}


def test_outputs_must_exist_and_be_non_empty_then_are_deleted() -> None:
    store = FakeStore({"smoke/t/1.png": 10, "smoke/t/2.png": 0, "smoke/t/meta.json": 5})
    task = SmokeTask("r", "t")
    task.record = {
        "status": "completed",
        "outputs": ["s3://out/smoke/t/1.png", "s3://out/smoke/t/2.png"],
        "output_location": "s3://out/smoke/t",
    }
    check_outputs(store, task)
    assert (task.failed_stage, task.reason) == ("outputs", "s3://out/smoke/t/2.png is empty")
    clean_up(store, task)
    assert sorted(store.deleted) == ["smoke/t/1.png", "smoke/t/2.png", "smoke/t/meta.json"]
    missing = SmokeTask("r", "m")
    missing.record = {"status": "completed", "outputs": ["s3://out/smoke/m/1.png"]}
    check_outputs(store, missing)
    assert missing.failed_stage == "outputs" and "NoSuchKey" in missing.reason


def test_timings_from_the_status_record() -> None:
    record = {
        "created_at": "2026-11-26T15:00:00+00:00",
        "started_at": "2026-11-26T15:01:30+00:00",
        "finished_at": "2026-11-26T15:01:42.5+00:00",
    }
    assert timings(record) == {"queue_wait": 90.0, "generation": 12.5, "total": 102.5}
    assert timings({"created_at": "2026-11-26T15:00:00+00:00"})["generation"] is None
