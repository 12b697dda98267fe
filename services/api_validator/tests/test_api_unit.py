"""The API front door against in-memory fakes: every example, every rejection, replay, status, cancel."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sdq_contracts import parse_config
from sdq_contracts.keys import claim_check_key
from sdq_contracts.messages import ATTR_TRACE_HEADER, TaskMessage, TaskState
from sdq_contracts.status import PUBLISH_LEASE_UNTIL

pytestmark = pytest.mark.unit


def example(repo_root, name):
    return json.loads((repo_root / "tests" / "examples" / f"{name}.json").read_text())


V2_EXAMPLES = [
    ("v1alpha2-text-to-image", "sdruntime", "text-to-image"),
    ("v1alpha2-image-to-image", "sdruntime", "image-to-image"),
    ("v1alpha2-extra-single-image", "sdruntime", "extra-single-image"),
    ("v1alpha2-extra-batch-images", "sdruntime", "extra-batch-images"),
    ("v1alpha2-pipeline", "comfyui", "pipeline"),
]


@pytest.mark.parametrize(("name", "runtime", "tasktype"), V2_EXAMPLES)
def test_every_v1alpha2_example_is_queued_for_its_runtime(h, repo_root, name, runtime, tasktype):
    body = example(repo_root, name)
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    task_id = body["task"]["metadata"]["id"]
    assert status == 202
    assert answer == {
        "id_task": task_id,
        "runtime": runtime,
        "output_location": f"s3://{h.cfg.buckets.outputs}/output/{task_id}",
        "status_url": f"https://api.example/v1alpha2/tasks/{task_id}",
    }
    [(message, attributes)] = h.publisher.published
    attributes.pop(ATTR_TRACE_HEADER, None)  # present when a tracer provider is installed
    parsed = TaskMessage.model_validate(message)
    assert (parsed.id, parsed.runtime, parsed.tasktype.value) == (task_id, runtime, tasktype)
    assert parsed.content == body["task"]["content"]
    assert attributes == {"runtime": runtime, "tasktype": tasktype}
    row = h.store.record(task_id)
    assert row.status is TaskState.QUEUED
    assert row.published_at is not None


@pytest.mark.parametrize("name", ["v1alpha1-text-to-image", "v1alpha1-image-to-image"])
def test_v1alpha1_examples_route_by_model_to_the_static_runtime(h, repo_root, name):
    body = example(repo_root, name)
    status, answer, _ = h.call("POST", "/v1alpha1", body)
    scripts = body["alwayson_scripts"]
    assert status == 202
    assert answer["id_task"] == scripts["id_task"]
    assert answer["sd_model_checkpoint"] == scripts["sd_model_checkpoint"]
    assert answer["output_location"] == f"s3://{h.cfg.buckets.outputs}/outputs/{scripts['id_task']}"
    assert "runtime" not in answer
    [(message, attributes)] = h.publisher.published
    attributes.pop(ATTR_TRACE_HEADER, None)
    assert attributes == {
        "runtime": "sdruntime",
        "tasktype": scripts["task"],
        "sd_model_checkpoint": scripts["sd_model_checkpoint"],
    }
    assert TaskMessage.model_validate(message).api_version.value == "v1alpha1"


def test_v1alpha1_model_without_a_runtime_is_refused(h, repo_root):
    body = example(repo_root, "v1alpha1-text-to-image")
    body["alwayson_scripts"]["sd_model_checkpoint"] = "sdxl-turbo.safetensors"
    status, answer, _ = h.call("POST", "/v1alpha1", body)
    assert status == 400
    assert answer["error"]["code"] == "unknown_model"
    assert "sdxl-turbo.safetensors" in answer["error"]["message"]
    assert h.publisher.published == []


def test_v1alpha1_routes_unknown_model_to_a_dynamic_model_runtime(cfg, repo_root, make_harness):
    data = cfg.model_dump(mode="json")
    data["runtimes"].append({"name": "flex", "type": "sdwebui", "dynamic_model": True})
    harness = make_harness(parse_config(data))
    body = example(repo_root, "v1alpha1-text-to-image")
    body["alwayson_scripts"]["sd_model_checkpoint"] = "sdxl-turbo.safetensors"
    status, _, _ = harness.call("POST", "/v1alpha1", body)
    assert status == 202
    assert harness.publisher.published[0][1]["runtime"] == "flex"


def test_v1alpha2_guide_model_switch_routes_like_the_model_override(cfg, repo_root, make_harness):
    """The seed guide's ``alwayson_scripts.sd_model_checkpoint`` is the task's model."""
    data = cfg.model_dump(mode="json")
    data["runtimes"].append({"name": "flex", "type": "sdwebui", "dynamic_model": True})
    harness = make_harness(parse_config(data))
    body = _t2i(repo_root, runtime="flex")
    body["task"]["content"]["alwayson_scripts"] = {"sd_model_checkpoint": "sdxl-turbo"}
    status, answer, _ = harness.call("POST", "/v1alpha2", body)
    assert status == 202, answer
    [(message, _attributes)] = harness.publisher.published
    assert TaskMessage.model_validate(message).sd_model_checkpoint == "sdxl-turbo"


def _t2i(repo_root, **meta):
    body = example(repo_root, "v1alpha2-text-to-image")
    body["task"]["metadata"].update(meta)
    return body


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (
            lambda b: b["task"]["metadata"].update(runtime="nope"),
            "task.metadata.runtime",
            "unknown_runtime",
        ),
        (
            lambda b: b["task"]["metadata"].update(tasktype="pipeline"),
            "task.metadata.tasktype",
            "unsupported_tasktype",
        ),
        (
            lambda b: b["task"]["metadata"].update(tasktype="paint"),
            "task.metadata.tasktype",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(prefix="../../x"),
            "task.metadata.prefix",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(prefix="/abs"),
            "task.metadata.prefix",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(prefix="a/\x07b"),
            "task.metadata.prefix",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(prefix="a//b"),
            "task.metadata.prefix",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(id="has space"),
            "task.metadata.id",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].update(id="x" * 65),
            "task.metadata.id",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["metadata"].pop("runtime"),
            "task.metadata.runtime",
            "invalid_request",
        ),
        (lambda b: b["task"].pop("content"), "task.content", "invalid_request"),
        (
            lambda b: b["task"]["metadata"].update(callback_url="ftp://x"),
            "task.metadata.callback_url",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["content"].update(width="512"),
            "task.content.width",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["content"].update(batch_size=64, n_iter=2),
            "task.content.batch_size",
            "invalid_request",
        ),
        (
            lambda b: b["task"]["content"].update(
                override_settings={"sd_model_checkpoint": "other.ckpt"}
            ),
            "task.content.override_settings.sd_model_checkpoint",
            "unknown_model",
        ),
        (
            lambda b: b["task"]["content"].update(
                alwayson_scripts={"sd_model_checkpoint": "other.ckpt"}
            ),
            "task.content.alwayson_scripts.sd_model_checkpoint",
            "unknown_model",
        ),
        (
            lambda b: b["task"]["content"].update(alwayson_scripts={"sd_model_checkpoint": 7}),
            "task.content.alwayson_scripts.sd_model_checkpoint",
            "invalid_request",
        ),
    ],
)
def test_bad_v1alpha2_requests_are_400_with_the_field_and_publish_nothing(
    h, repo_root, mutate, field, code
):
    body = _t2i(repo_root)
    mutate(body)
    status, answer, headers = h.call("POST", "/v1alpha2", body)
    assert status == 400, answer
    assert headers["Content-Type"] == "application/json"
    assert answer["error"]["field"] == field
    assert answer["error"]["code"] == code
    assert h.publisher.published == []
    assert h.store.rows == {}


@pytest.mark.parametrize(
    ("name", "mutate", "field"),
    [
        ("v1alpha2-image-to-image", lambda c: c.pop("init_images"), "task.content.init_images"),
        ("v1alpha2-image-to-image", lambda c: c.update(init_images=[]), "task.content.init_images"),
        (
            "v1alpha2-image-to-image",
            lambda c: c.update(init_images=["file:///etc/passwd"]),
            "task.content.init_images[0]",
        ),
        ("v1alpha2-extra-single-image", lambda c: c.pop("image"), "task.content.image"),
        (
            "v1alpha2-extra-batch-images",
            lambda c: c.update(imageList=[{"name": "x"}]),
            "task.content.imageList[0].data",
        ),
        ("v1alpha2-pipeline", lambda c: c["3"].pop("class_type"), "task.content.3.class_type"),
        (
            "v1alpha2-pipeline",
            lambda c: c["3"]["inputs"].update(model=["42", 0]),
            "task.content.3.inputs.model",
        ),
        ("v1alpha2-pipeline", lambda c: c.pop("9"), "task.content"),
        ("v1alpha2-pipeline", lambda c: c.clear(), "task.content"),
    ],
)
def test_content_structure_is_checked_per_task_type(h, repo_root, name, mutate, field):
    body = example(repo_root, name)
    mutate(body["task"]["content"])
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert h.publisher.published == []


def test_a_pipeline_sent_to_an_sdwebui_runtime_names_the_task_type(h, repo_root):
    body = example(repo_root, "v1alpha2-pipeline")
    body["task"]["metadata"]["runtime"] = "sdruntime"
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    assert status == 400
    assert "'pipeline'" in answer["error"]["message"] and "sdruntime" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ("{not json", {}, 400, "invalid_json"),
        ("[1, 2]", {}, 400, "invalid_json"),
        ("", {}, 400, "empty_body"),
        ('{"task": {}}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies_get_json_errors(h, body, headers, status, code):
    got, answer, _ = h.call("POST", "/v1alpha2", body, headers)
    assert (got, answer["error"]["code"]) == (status, code)


def test_a_body_over_the_ceiling_is_413(cfg, repo_root, make_harness):
    harness = make_harness(cfg)
    body = _t2i(repo_root)
    body["task"]["content"]["prompt"] = "x" * (cfg.api.max_body_bytes + 1)
    status, answer, _ = harness.call("POST", "/v1alpha2", body)
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    assert harness.publisher.published == []


def test_unknown_resource_and_method(h):
    assert h.call("GET", "/v1alpha3")[0] == 404
    status, answer, headers = h.call("PUT", "/v1alpha2", {})
    assert (status, answer["error"]["code"], headers["Allow"]) == (
        405,
        "method_not_allowed",
        "POST",
    )


def test_a_task_without_an_id_gets_a_fresh_one_each_time(h, repo_root):
    body = _t2i(repo_root)
    del body["task"]["metadata"]["id"]
    first = h.call("POST", "/v1alpha2", body)[1]["id_task"]
    second = h.call("POST", "/v1alpha2", body)[1]["id_task"]
    assert first != second
    assert len(h.publisher.published) == 2


def test_the_same_request_twice_is_replayed_not_queued_again(h, repo_root):
    body = _t2i(repo_root)
    first = h.call("POST", "/v1alpha2", body)
    # same JSON, different key order and whitespace
    second = h.call("POST", "/v1alpha2", json.dumps(body, indent=4, sort_keys=True))
    assert first[0] == second[0] == 202
    assert first[1] == second[1]
    assert second[2]["Idempotent-Replayed"] == "true"
    assert len(h.publisher.published) == 1


def test_the_same_id_with_another_body_is_409(h, repo_root):
    body = _t2i(repo_root)
    h.call("POST", "/v1alpha2", body)
    other = copy.deepcopy(body)
    other["task"]["content"]["prompt"] = "A cat"
    status, answer, _ = h.call("POST", "/v1alpha2", other)
    assert (status, answer["error"]["code"]) == (409, "id_conflict")
    assert len(h.publisher.published) == 1


def test_a_publish_failure_is_a_500_and_leaves_no_row(h, repo_root):
    h.publisher.fail_with = RuntimeError("sns down")
    status, answer, _ = h.call("POST", "/v1alpha2", _t2i(repo_root))
    assert (status, answer["error"]["code"]) == (500, "internal_error")
    assert h.store.rows == {}
    h.publisher.fail_with = None
    assert h.call("POST", "/v1alpha2", _t2i(repo_root))[0] == 202  # the retry is a new task


def test_a_row_left_unpublished_is_published_by_the_replay_once_its_lease_expired(h, repo_root):
    body = _t2i(repo_root)
    h.store.mark_published = lambda task_id: None  # the first attempt "dies" before marking
    h.call("POST", "/v1alpha2", body)
    h.publisher.published.clear()  # ... and its publish never happened
    # while the creator's publish lease runs, a replay answers but does not publish
    status, _, headers = h.call("POST", "/v1alpha2", body)
    assert (status, headers["Idempotent-Replayed"], h.publisher.published) == (202, "true", [])
    # once it expired (the creator is provably dead), exactly one replay takes over
    h.store.rows["example-t2i"][PUBLISH_LEASE_UNTIL] = 0
    assert h.call("POST", "/v1alpha2", body)[0] == 202
    assert h.call("POST", "/v1alpha2", body)[0] == 202
    assert len(h.publisher.published) == 1


def test_a_replay_while_the_creator_publishes_does_not_publish_again(h, repo_root):
    """Issue 14 case 1: a replay arriving between "row created" and "row marked published"."""
    body = _t2i(repo_root)
    replays: list[tuple[int, Any]] = []
    publish = h.publisher.publish

    def publish_with_a_replay_in_between(message: str, attributes: dict[str, str]) -> str:
        if not replays:
            status, _, headers = h.call("POST", "/v1alpha2", body)
            replays.append((status, headers.get("Idempotent-Replayed")))
        return publish(message, attributes)

    h.publisher.publish = publish_with_a_replay_in_between
    assert h.call("POST", "/v1alpha2", body)[0] == 202
    assert replays == [(202, "true")]
    assert len(h.publisher.published) == 1


def test_large_tasks_travel_by_claim_check(h, repo_root):
    body = _t2i(repo_root)
    body["task"]["content"]["prompt"] = "p" * 300_000
    status, _, _ = h.call("POST", "/v1alpha2", body)
    assert status == 202
    [(message, _)] = h.publisher.published
    assert "content" not in message
    assert message["content_ref"] == f"s3://outputs/{claim_check_key('example-t2i')}"
    assert json.loads(h.claims.objects[claim_check_key("example-t2i")]) == body["task"]["content"]
    assert len(json.dumps(message)) < 10_000


def test_status_of_a_task(h, repo_root):
    h.call("POST", "/v1alpha2", _t2i(repo_root))
    status, row, _ = h.call("GET", "/v1alpha2/tasks/example-t2i")
    assert status == 200
    assert row["status"] == "queued" and row["runtime"] == "sdruntime"
    assert not {"request_hash", "response", "expires_at"} & row.keys()
    assert h.call("GET", "/v1alpha2/tasks/missing")[0] == 404
    assert h.call("GET", "/v1alpha2/tasks/bad%20id")[0] == 400


def test_status_shows_the_stage_of_a_running_task_only(h, repo_root):
    h.call("POST", "/v1alpha2", _t2i(repo_root))
    row = h.store.rows["example-t2i"]
    h.store.rows["example-t2i"] = row | {"status": "running", "stage": "uploading"}
    assert h.call("GET", "/v1alpha2/tasks/example-t2i")[1]["stage"] == "uploading"
    h.store.rows["example-t2i"] = row | {"status": "completed", "stage": "uploading"}
    assert "stage" not in h.call("GET", "/v1alpha2/tasks/example-t2i")[1]


def test_cancel_queued_running_and_finished_tasks(h, repo_root):
    for task_id in ("q", "r", "c"):
        h.call("POST", "/v1alpha2", _t2i(repo_root, id=task_id))
    h.store.rows["r"] = h.store.rows["r"] | {"status": "running"}
    h.store.rows["c"] = h.store.rows["c"] | {"status": "completed"}

    status, row, _ = h.call("DELETE", "/v1alpha2/tasks/q")
    assert (status, row["status"]) == (200, "cancelled")
    assert h.call("DELETE", "/v1alpha2/tasks/q")[0] == 200  # idempotent
    status, row, _ = h.call("DELETE", "/v1alpha2/tasks/r")
    assert (status, row["status"], row["cancel_requested"]) == (202, "running", True)
    status, answer, _ = h.call("DELETE", "/v1alpha2/tasks/c")
    assert (status, answer["error"]["code"]) == (409, "not_cancellable")
    assert h.call("DELETE", "/v1alpha2/tasks/none")[0] == 404
