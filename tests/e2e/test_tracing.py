"""One trace per task, from the API handler to the notification, on the local stack; a missing or
garbage trace header never breaks processing; every log line of a task carries its ids."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from sdq_cli import local
from sdq_cli.api import ApiClient
from sdq_cli.follow import Tracked, follow
from sdq_cli.traces import build_tree, spans_from_files, xray_to_hex
from sdq_contracts.messages import ATTR_RUNTIME, ATTR_TRACE_HEADER, ResultNotification, TaskMessage
from sdq_contracts.requests import TaskType
from sdq_local.stack import LOCAL_CREDENTIALS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack

API_SPANS = {"POST /v1alpha2", "validate", "status.create", "sns.publish"}
AGENT_SPANS = {
    "receive",
    "prepare",
    "status.claim",
    "generate",
    "upload",
    "status.update",
    "notify",
}


@dataclass(frozen=True)
class Stack:
    """The local stack as `sdq local up` runs it (a background process), seen from a test."""

    api_url: str
    api_key: str
    aws_endpoint: str
    region: str
    input_topic_arn: str
    results_queue_url: str
    trace_dir: Path
    log_dir: Path

    def client(self, service):
        return boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        ).client(service, endpoint_url=self.aws_endpoint)


@pytest.fixture(scope="module")
def stack(repo_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("trace")
    info, _ = local.up(state, str(repo_root / "config.yaml"), 0.15, [])
    try:
        topic = next(
            t["TopicArn"]
            for t in boto3.session.Session(
                aws_access_key_id="x", aws_secret_access_key="x", region_name=info["region"]
            )
            .client("sns", endpoint_url=info["aws_endpoint"])
            .list_topics()["Topics"]
            if t["TopicArn"].endswith(":sdq-tasks")
        )
        yield Stack(
            api_url=info["api_url"],
            api_key=info["api_key"],
            aws_endpoint=info["aws_endpoint"],
            region=info["region"],
            input_topic_arn=topic,
            results_queue_url=info["results_queue_url"],
            trace_dir=Path(info["trace_dir"]),
            log_dir=Path(info["logs"]),
        )
    finally:
        local.down(state)


def _notification(stack: Stack, task_id, within_s=30.0) -> ResultNotification:
    sqs = stack.client("sqs")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for msg in sqs.receive_message(
            QueueUrl=stack.results_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            note = ResultNotification.model_validate_json(msg["Body"])
            if note.id == task_id:
                return note
    raise AssertionError(f"no notification for {task_id}")


def _spans(stack: Stack, trace_id, expected, within_s=10.0):
    """The trace's spans once every expected name is written (the agent's task span ends last)."""
    deadline = time.monotonic() + within_s
    while True:
        spans = spans_from_files(stack.trace_dir, xray_to_hex(trace_id))
        if expected <= {s.name for s in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def test_one_trace_spans_the_api_the_agent_and_the_notification(stack, repo_root):
    body = json.loads((repo_root / "tests/examples/v1alpha2-text-to-image.json").read_text())
    body["task"]["metadata"]["id"] = "traced-1"
    api = ApiClient(stack.api_url, stack.api_key)
    api.submit("/v1alpha2", body)
    task = Tracked("traced-1", "sdruntime")
    follow(api, [task], 30, lambda *_: None)
    note = _notification(stack, "traced-1")
    trace_id = task.record["trace_id"]
    assert note.trace_id == trace_id

    spans = _spans(stack, trace_id, API_SPANS | AGENT_SPANS)
    by_name = {s.name: s for s in spans}
    assert by_name.keys() >= API_SPANS | AGENT_SPANS
    roots, orphans = build_tree(spans)
    assert orphans == []
    assert [r.name for r in roots] == ["POST /v1alpha2"]
    # The agent continues the API's trace under the publish span ...
    assert by_name["receive"].parent_id == by_name["sns.publish"].span_id
    # ... and every stage hangs off the task's span (directly or through another stage).
    parents = {s.span_id: s.parent_id for s in spans}

    def ancestors(span_id):
        while span_id in parents and parents[span_id] is not None:
            span_id = parents[span_id]
            yield span_id

    for name in AGENT_SPANS - {"receive"}:
        assert by_name["receive"].span_id in set(ancestors(by_name[name].span_id)), name
    assert by_name["status.claim"].parent_id == by_name["prepare"].span_id
    # AWS SDK calls of the agent are traced inside their stage.
    upload_children = [s for s in spans if s.parent_id == by_name["upload"].span_id]
    assert {s.name for s in upload_children} == {"S3.PutObject"}
    assert by_name["generate"].duration_ms >= 100


@pytest.mark.parametrize("header", [None, "garbage", "Root=1-zzzz;Parent=;Sampled=x", "Root=;;;"])
def test_a_missing_or_garbage_trace_header_still_completes(stack, header):
    task_id = f"hdr-{abs(hash(header)) % 10_000}"
    message = TaskMessage(
        id=task_id, runtime="sdruntime", tasktype=TaskType.TEXT_TO_IMAGE, content={"prompt": "x"}
    )
    attributes = {ATTR_RUNTIME: {"DataType": "String", "StringValue": "sdruntime"}}
    if header is not None:
        attributes[ATTR_TRACE_HEADER] = {"DataType": "String", "StringValue": header}
    stack.client("sns").publish(
        TopicArn=stack.input_topic_arn,
        Message=message.model_dump_json(),
        MessageAttributes=attributes,
    )
    note = _notification(stack, task_id)
    assert note.status.value == "completed"
    assert note.trace_id and note.trace_id.startswith("1-")
    spans = _spans(stack, note.trace_id, {"receive", "notify"})
    roots, orphans = build_tree(spans)
    assert [r.name for r in roots] == ["receive"]  # a fresh trace, rooted at the agent
    assert orphans == []


def test_every_agent_log_line_of_a_task_carries_its_task_and_trace_id(stack, repo_root):
    body = json.loads((repo_root / "tests/examples/v1alpha2-image-to-image.json").read_text())
    body["task"]["metadata"]["id"] = "logged-1"
    api = ApiClient(stack.api_url, stack.api_key)
    api.submit("/v1alpha2", body)
    task = Tracked("logged-1", "sdruntime")
    follow(api, [task], 30, lambda *_: None)
    trace_id = task.record["trace_id"]
    time.sleep(0.2)  # the final log line is written right after the status row
    records = [
        json.loads(line)
        for line in (stack.log_dir / "queue-agent-sdruntime.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [r for r in records if r.get("task_id") == "logged-1"]
    assert {r["event"] for r in mine} >= {"task_received", "task_completed"}
    message_ids = {r["message_id"] for r in mine}
    assert len(message_ids) == 1
    of_message = [r for r in records if r.get("message_id") in message_ids]
    assert of_message
    assert all(r.get("task_id") == "logged-1" and r.get("trace_id") == trace_id for r in of_message)
