"""Contract round trips: what a producer writes, the consumer's model reads back unchanged."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from sdq_contracts import keys
from sdq_contracts.messages import (
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_contracts.requests import TaskType, V1Alpha1Request, V1Alpha2Request, check_prefix

pytestmark = pytest.mark.unit


def test_task_message_round_trip_through_json():
    msg = TaskMessage(
        id="t1",
        runtime="sd",
        tasktype=TaskType.TEXT_TO_IMAGE,
        prefix="out/a",
        context={"k": [1, 2]},
        content={"prompt": "a dog", "width": 512},
    )
    wire = msg.model_dump_json(exclude_none=True)
    assert TaskMessage.model_validate_json(wire) == msg
    assert json.loads(wire)["version"] == 1


def test_task_message_needs_exactly_one_of_content_and_ref():
    with pytest.raises(ValidationError, match="exactly one"):
        TaskMessage(id="t", runtime="sd", tasktype=TaskType.PIPELINE)
    with pytest.raises(ValidationError, match="exactly one"):
        TaskMessage(
            id="t", runtime="sd", tasktype=TaskType.PIPELINE, content={}, content_ref="s3://b/k"
        )
    with pytest.raises(ValidationError, match="s3://"):
        TaskMessage(id="t", runtime="sd", tasktype=TaskType.PIPELINE, content_ref="https://x/y")


def test_notification_round_trip_and_seed_fields():
    note = ResultNotification(
        id="t1",
        runtime="sd",
        result=False,
        status=TaskState.FAILED,
        image_url=[],
        output_url="s3://b/out/t1",
        context="c",
        error=TaskError(code="runtime_error", message="boom"),
        timings={"generate": 1.25},
    )
    wire = json.loads(note.model_dump_json())
    assert {
        "id",
        "result",
        "image_url",
        "output_url",
        "context",
        "runtime",
        "status",
        "error",
        "timings",
    } <= wire.keys()
    assert ResultNotification.model_validate(wire) == note


def test_notification_output_url_is_the_out_object_and_keeps_the_folder():
    """Seed guide: ``output_url`` is the task's ``.out`` object; the folder is kept beside it."""
    note = ResultNotification(
        id="t1",
        runtime="sd",
        result=True,
        status=TaskState.COMPLETED,
        output_location=keys.output_location("b", "out", "t1"),
    )
    assert note.output_url == f"s3://b/{keys.response_key('out', 't1')}"
    assert note.output_location == "s3://b/out/t1"
    wire = json.loads(note.model_dump_json())
    assert wire["output_url"].endswith(".out")
    assert ResultNotification.model_validate(wire) == note
    with pytest.raises(ValidationError, match="output_url"):
        ResultNotification(id="t1", runtime="sd", result=False, status=TaskState.FAILED)


def test_status_record_survives_dynamodb_types():
    record = StatusRecord(
        id="t1",
        runtime="sd",
        tasktype=TaskType.IMAGE_TO_IMAGE,
        status=TaskState.RUNNING,
        output_location="s3://b/t1",
        attempts=2,
        outputs=["s3://b/t1/a.png"],
        expires_at=1_900_000_000,
        error=TaskError(code="x", message="y", permanent=False),
        response={"ratio": 0.5},
    )
    item = record.to_item()
    assert not any(isinstance(v, float) for v in item.values())
    assert "finished_at" not in item  # None values are not written
    from decimal import Decimal

    assert item["response"]["ratio"] == Decimal("0.5")
    assert StatusRecord.from_item(item) == record


def test_request_models_accept_the_seed_shapes(repo_root):
    examples = repo_root / "tests" / "examples"
    for path in examples.glob("v1alpha2-*.json"):
        V1Alpha2Request.model_validate_json(path.read_text())
    for path in examples.glob("v1alpha1-*.json"):
        req = V1Alpha1Request.model_validate_json(path.read_text())
        assert req.alwayson_scripts.sd_model_checkpoint


@pytest.mark.parametrize(
    "bad", ["../x", "a/../b", "/abs", "a//b", "./a", "a\nb", "a\x00", " a", "x" * 600]
)
def test_unsafe_prefixes_are_refused(bad):
    with pytest.raises(ValueError, match="prefix"):
        check_prefix(bad)


@pytest.mark.parametrize(
    ("good", "clean"), [("", ""), ("out", "out"), ("a/b-c/d_e.f/", "a/b-c/d_e.f")]
)
def test_safe_prefixes(good, clean):
    assert check_prefix(good) == clean


def test_output_keys_are_deterministic_per_task():
    suffix = keys.task_suffix("task-1")
    assert len(suffix) == 4 and suffix == keys.task_suffix("task-1") != keys.task_suffix("task-2")
    assert keys.image_key("out", "task-1", 1) == f"out/task-1/task-1-{suffix}-1.png"
    assert keys.image_key("", "task-1", 2, "webp") == f"task-1/task-1-{suffix}-2.webp"
    assert keys.response_key("out/", "task-1") == f"out/task-1/task-1-{suffix}.out"
    assert keys.output_location("bkt", "out", "task-1") == "s3://bkt/out/task-1"
    assert keys.parse_s3_uri("s3://bkt/a/b.json") == ("bkt", "a/b.json")
    with pytest.raises(ValueError, match="count from 1"):
        keys.image_key("out", "t", 0)
    with pytest.raises(ValueError, match="bucket and a key"):
        keys.parse_s3_uri("s3://bucket-only")
