"""The local stack path: moto S3 notifications → SQS → the same handler → the script on a dir."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from sdq_local.model_sync_local import (
    build_local_model_sync,
    provision_model_events,
    run_local_model_sync,
)
from sdq_testing.pytest_plugin import AwsTarget

pytestmark = pytest.mark.integration

BUCKET = "sdq-models-local"


@pytest.fixture
def clients(aws: AwsTarget) -> tuple[Any, Any]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    return s3, boto3.client("sqs")


def test_bucket_events_sync_the_local_node_in_burst_mode(
    clients: tuple[Any, Any], tmp_path: Path, aws_cli_dir: Path
) -> None:
    s3, sqs = clients
    node_dir = tmp_path / "node" / "models"
    queue_url = provision_model_events(s3, sqs, BUCKET)
    sync = build_local_model_sync(bucket=BUCKET, node_dir=node_dir, aws_cli_dir=aws_cli_dir)

    s3.put_object(Bucket=BUCKET, Key="Stable-diffusion/my model.safetensors", Body=b"ckpt")
    s3.put_object(Bucket=BUCKET, Key="Lora/l.safetensors", Body=b"lora")
    stop = threading.Event()
    assert run_local_model_sync(sqs, sync, queue_url, stop, burst=True) >= 1
    assert (node_dir / "Stable-diffusion" / "my model.safetensors").read_bytes() == b"ckpt"
    assert (node_dir / "Lora" / "l.safetensors").read_bytes() == b"lora"

    s3.delete_object(Bucket=BUCKET, Key="Lora/l.safetensors")
    run_local_model_sync(sqs, sync, queue_url, stop, burst=True)
    assert not (node_dir / "Lora").exists()
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


def test_worker_thread_picks_up_an_upload_and_stops_on_request(
    clients: tuple[Any, Any], tmp_path: Path, aws_cli_dir: Path
) -> None:
    s3, sqs = clients
    node_dir = tmp_path / "node" / "models"
    queue_url = provision_model_events(s3, sqs, BUCKET)
    sync = build_local_model_sync(bucket=BUCKET, node_dir=node_dir, aws_cli_dir=aws_cli_dir)
    stop = threading.Event()
    worker = threading.Thread(target=run_local_model_sync, args=(sqs, sync, queue_url, stop))
    worker.start()
    try:
        s3.put_object(Bucket=BUCKET, Key="VAE/new.pt", Body=b"vae")
        target = node_dir / "VAE" / "new.pt"
        deadline = time.monotonic() + 60
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling a file the worker writes, bounded by the deadline
        assert target.read_bytes() == b"vae"
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
