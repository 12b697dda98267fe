"""The whole local stack, as `make run` starts it: a task through the HTTP API with an API key
ends as objects in S3, a completed status row, one notification and an empty queue."""

from __future__ import annotations

import asyncio
import io
import json

import boto3
import pytest
from PIL import Image

from sdq_cli.api import ApiClient
from sdq_cli.follow import Tracked, download, follow
from sdq_cli.target import Target
from sdq_contracts import load_config
from sdq_contracts.keys import image_key, response_key
from sdq_contracts.messages import ResultNotification
from sdq_local.stack import LOCAL_CREDENTIALS, LocalStack, StackOptions

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack


@pytest.fixture
async def stack(repo_root, tmp_path):
    cfg = load_config(repo_root / "config.yaml")
    local = LocalStack(cfg, StackOptions(state_dir=tmp_path / "state", emulator_latency_s=0.2))
    info = await local.start()
    try:
        yield local, info
    finally:
        await local.stop()


def _clients(info):
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=info.region,
    )
    return (
        session.client(name, endpoint_url=info.aws_endpoint) for name in ("s3", "sqs", "dynamodb")
    )


async def test_a_text_to_image_task_end_to_end(stack, repo_root, tmp_path):
    _, info = stack
    body = json.loads((repo_root / "tests/examples/v1alpha2-text-to-image.json").read_text())
    body["task"]["content"].update(width=320, height=192)
    api = ApiClient(info.api_url, info.api_key)
    target = Target(
        api_url=info.api_url,
        api_key=info.api_key,
        region=info.region,
        aws_endpoint=info.aws_endpoint,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    accepted = await asyncio.to_thread(api.submit, "/v1alpha2", body)
    task = Tracked(accepted["id_task"], accepted["runtime"])
    await asyncio.to_thread(follow, api, [task], 60, lambda *_: None)
    files = await asyncio.to_thread(download, target, task, tmp_path / "out")

    s3, sqs, _ = _clients(info)
    [msg] = sqs.receive_message(QueueUrl=info.results_queue_url, WaitTimeSeconds=5)["Messages"]
    note = ResultNotification.model_validate_json(msg["Body"])
    bucket = info.resources.output_bucket
    assert note.status.value == "completed"
    assert note.result is True
    assert note.image_url == [f"s3://{bucket}/{image_key('output', 'example-t2i', 1)}"]
    assert note.output_url == f"s3://{bucket}/{response_key('output', 'example-t2i')}"
    assert note.output_location == f"s3://{bucket}/output/example-t2i"
    assert note.timings
    assert note.timings["generate"] >= 0.2

    with Image.open(io.BytesIO(files[0].read_bytes())) as img:
        assert (img.format, img.size) == ("PNG", (320, 192))
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="output/")["Contents"]
    assert {o["Key"] for o in listed} == {
        image_key("output", "example-t2i", 1),
        response_key("output", "example-t2i"),
    }
    assert task.record["status"] == "completed"
    assert task.record["outputs"] == note.image_url
    attrs = sqs.get_queue_attributes(
        QueueUrl=info.resources.queue_urls["sdruntime"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
