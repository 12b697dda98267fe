"""The api_validator with its real boto3 adapters against the moto server: rows, routing, claim check."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from sdq_api_validator.app import build_api
from sdq_api_validator.settings import load_settings
from sdq_contracts.config import runtimes_env
from sdq_contracts.keys import claim_check_key, parse_s3_uri
from sdq_contracts.messages import StatusRecord, TaskMessage, TaskState
from sdq_local.provision import provision

pytestmark = pytest.mark.integration


@pytest.fixture
def deployed(aws, cfg):
    p = provision(cfg)
    settings = load_settings(
        {
            "SDQ_RUNTIMES": runtimes_env(cfg.runtimes),
            "SDQ_INPUT_TOPIC_ARN": p.input_topic_arn,
            "SDQ_STATUS_TABLE": p.status_table,
            "SDQ_OUTPUT_BUCKET": p.output_bucket,
        }
    )
    return p, build_api(settings)


def receive(url, expect):
    sqs = boto3.client("sqs")
    got: list[dict[str, Any]] = []
    for _ in range(10):
        if len(got) >= expect:
            break
        got += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
    return got


def example(repo_root, name):
    return json.loads((repo_root / "tests" / "examples" / f"{name}.json").read_text())


def test_tasks_reach_only_their_runtimes_queue_with_a_queued_row(deployed, repo_root, call_api):
    p, api = deployed
    assert (
        call_api(api, "POST", "/v1alpha2", example(repo_root, "v1alpha2-text-to-image"))[0] == 202
    )
    assert call_api(api, "POST", "/v1alpha2", example(repo_root, "v1alpha2-pipeline"))[0] == 202
    assert (
        call_api(api, "POST", "/v1alpha1", example(repo_root, "v1alpha1-text-to-image"))[0] == 202
    )

    sd = receive(p.queue_urls["sdruntime"], 2)
    comfy = receive(p.queue_urls["comfyui"], 1)
    assert sorted(TaskMessage.model_validate_json(m["Body"]).id for m in sd) == [
        "example-t2i",
        "example-v1-t2i",
    ]
    assert [TaskMessage.model_validate_json(m["Body"]).id for m in comfy] == ["example-pipeline"]
    v1 = next(m for m in sd if "example-v1-t2i" in m["Body"])
    assert (
        v1["MessageAttributes"]["sd_model_checkpoint"]["StringValue"]
        == "v1-5-pruned-emaonly.safetensors"
    )

    status, row, _ = call_api(api, "GET", "/v1alpha2/tasks/example-pipeline")
    assert (status, row["status"], row["runtime"]) == (200, "queued", "comfyui")
    item = boto3.client("dynamodb").get_item(
        TableName=p.status_table, Key={"id": {"S": "example-t2i"}}
    )["Item"]
    assert int(item["expires_at"]["N"]) > 0 and "published_at" in item


def test_replay_and_conflict_use_the_table_condition(deployed, repo_root, call_api):
    p, api = deployed
    body = example(repo_root, "v1alpha2-text-to-image")
    first = call_api(api, "POST", "/v1alpha2", body)
    again = call_api(api, "POST", "/v1alpha2", body)
    assert first[1] == again[1] and again[2]["Idempotent-Replayed"] == "true"
    body["task"]["content"]["prompt"] = "different"
    assert call_api(api, "POST", "/v1alpha2", body)[0] == 409
    assert len(receive(p.queue_urls["sdruntime"], 2)) == 1


def test_claim_check_round_trip(deployed, repo_root, call_api):
    p, api = deployed
    body = example(repo_root, "v1alpha2-text-to-image")
    body["task"]["content"]["prompt"] = "very long prompt " * 20_000  # ~340 KB: over SNS's limit
    assert call_api(api, "POST", "/v1alpha2", body)[0] == 202
    [msg] = receive(p.queue_urls["sdruntime"], 1)
    message = TaskMessage.model_validate_json(msg["Body"])
    assert message.content is None and message.content_ref is not None
    bucket, key = parse_s3_uri(message.content_ref)
    assert (bucket, key) == (p.output_bucket, claim_check_key("example-t2i"))
    stored = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert json.loads(stored) == body["task"]["content"]


def test_cancel_through_dynamodb_conditions(deployed, repo_root, call_api):
    p, api = deployed
    for task_id in ("queued-one", "running-one"):
        body = example(repo_root, "v1alpha2-text-to-image")
        body["task"]["metadata"]["id"] = task_id
        call_api(api, "POST", "/v1alpha2", body)
    ddb = boto3.client("dynamodb")
    ddb.update_item(
        TableName=p.status_table,
        Key={"id": {"S": "running-one"}},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "running"}},
    )
    assert call_api(api, "DELETE", "/v1alpha2/tasks/queued-one")[1]["status"] == "cancelled"
    status, row, _ = call_api(api, "DELETE", "/v1alpha2/tasks/running-one")
    assert (status, row["cancel_requested"]) == (202, True)
    item = ddb.get_item(TableName=p.status_table, Key={"id": {"S": "queued-one"}})["Item"]
    from boto3.dynamodb.types import TypeDeserializer

    record = StatusRecord.from_item({k: TypeDeserializer().deserialize(v) for k, v in item.items()})
    assert record.status is TaskState.CANCELLED and record.finished_at is not None


def test_forty_concurrent_identical_posts_publish_exactly_once(
    deployed, repo_root, call_api, monkeypatch
):
    """Issue 14 case 1: the replays that arrive while the creator publishes (a slow SNS here)
    answer 202 replayed and publish nothing; the queue gets the task once."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sdq_api_validator.adapters import aws as adapters

    p, api = deployed
    publish = adapters.SnsPublisher.publish
    calls = []
    lock = threading.Lock()

    def slow_publish(self, message, attributes):
        with lock:
            calls.append(json.loads(message)["id"])
        time.sleep(0.3)  # widen the window between "row created" and "row marked published"
        return publish(self, message, attributes)

    monkeypatch.setattr(adapters.SnsPublisher, "publish", slow_publish)
    body = example(repo_root, "v1alpha2-text-to-image")
    start = threading.Barrier(40)

    def post(_: int):
        start.wait()
        status, answer, headers = call_api(api, "POST", "/v1alpha2", body)
        return status, headers.get("Idempotent-Replayed"), answer

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(post, range(40)))
    assert sorted((s, r or "") for s, r, _ in results) == [(202, "")] + [(202, "true")] * 39
    assert len({json.dumps(a, sort_keys=True) for _, _, a in results}) == 1  # one answer
    assert calls == ["example-t2i"]
    assert len(receive(p.queue_urls["sdruntime"], 2)) == 1
