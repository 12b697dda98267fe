"""moto behind the keep-alive front, and the counting proxy in front of it, with real botocore
calls: connections are reused, every call is counted once under its operation, received
messages and empty receives are counted, HEAD keeps the object's size."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from sdq_bench.agent import get_json, process, wait_http
from sdq_runtime_emulator.harness import free_port

pytestmark = pytest.mark.integration

REGION = "us-west-2"
STATS = "/__bench/stats"


@pytest.fixture(scope="module")
def front_and_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("front")
    moto_port, proxy_port = free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process(
                [sys.executable, "-m", "sdq_bench.moto_front", "-p", str(moto_port)],
                logs / "moto.log",
            )
        )
        wait_http(f"{moto_url}/moto-api/", 60, "moto front")
        stack.enter_context(
            process(
                [
                    sys.executable, "-m", "sdq_bench.proxy", "--port", str(proxy_port),
                    "--target", moto_url, "--expect", "3",
                ],
                logs / "proxy.log",
            )
        )  # fmt: skip
        wait_http(f"{proxy_url}{STATS}", 60, "proxy")
        yield moto_url, proxy_url


def client(service: str, url: str):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def test_calls_through_the_proxy_are_counted_and_connections_kept_alive(front_and_proxy):
    moto_url, proxy_url = front_and_proxy
    before = get_json(f"{moto_url}{STATS}")
    sqs = client("sqs", proxy_url)
    queue = sqs.create_queue(QueueName="counted")["QueueUrl"]
    for i in range(2):
        sqs.send_message(QueueUrl=queue, MessageBody=f"m{i}")
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
    )
    assert sqs.receive_message(QueueUrl=queue).get("Messages") is None
    for _ in range(15):
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])

    stats = get_json(f"{proxy_url}{STATS}")
    calls = {name: entry[0] for name, entry in stats["calls"].items()}
    assert calls == {
        "sqs:CreateQueue": 1,
        "sqs:SendMessage": 2,
        "sqs:ReceiveMessage": 2,
        "sqs:DeleteMessageBatch": 1,
        "sqs:GetQueueAttributes": 15,
    }
    assert stats["messages_received"] == len(got) == 2
    # the second receive was empty while fewer than --expect (3) messages had arrived
    assert (stats["empty_receives"], stats["starved_receives"]) == (1, 1)
    # 21 calls: one connection from this client, one pooled upstream connection to moto
    assert stats["agent_connections"] == 1
    assert stats["upstream_connections"] == 1
    after = get_json(f"{moto_url}{STATS}")
    assert after["requests"] - before["requests"] == 21
    assert after["connections"] - before["connections"] <= 1
    assert after["cpu_ms"]["sqs:GetQueueAttributes"][0] == 15


def test_the_front_serves_s3_objects_and_head_keeps_their_size(front_and_proxy):
    moto_url, proxy_url = front_and_proxy
    direct = client("s3", moto_url)
    direct.create_bucket(Bucket="front", CreateBucketConfiguration={"LocationConstraint": REGION})
    body = bytes(range(256)) * 1000
    s3 = client("s3", proxy_url)
    s3.put_object(Bucket="front", Key="dir/a b+c.png", Body=body)
    assert s3.head_object(Bucket="front", Key="dir/a b+c.png")["ContentLength"] == len(body)
    assert direct.get_object(Bucket="front", Key="dir/a b+c.png")["Body"].read() == body
    calls = get_json(f"{proxy_url}{STATS}")["calls"]
    assert calls["s3:PutObject"][:1] == [1]
    assert calls["s3:HeadObject"][:1] == [1]


def test_werkzeug_moto_closes_every_connection_and_the_front_does_not(tmp_path: Path):
    """The reason for the front: moto_server answers each request with Connection: close."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    moto_server = str(Path(sys.executable).with_name("moto_server"))
    with process([moto_server, "-H", "127.0.0.1", "-p", str(port)], tmp_path / "m.log"):
        wait_http(f"{url}/moto-api/", 60, "moto_server")
        sqs = client("sqs", url)
        sqs.list_queues()
        response = sqs.list_queues()
    assert response["ResponseMetadata"]["HTTPHeaders"].get("connection") == "close"
