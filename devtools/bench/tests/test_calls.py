"""The proxy's call parser against the requests botocore really sends (captured by a local
server, not written by hand), the cost arithmetic, and the verdict."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sdq_bench.calls import (
    PRICES_USD,
    Call,
    calls_by_service,
    classify,
    cost_per_1000,
    received_messages,
    verdict,
)

REGION = "us-west-2"
QUEUE = "https://sqs.us-west-2.amazonaws.com/123456789012/q"
TABLE = "status"
KEY = {"id": {"S": "t-1"}}


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class _Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    captured: list[Captured]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        self.captured.append(Captured(self.command, path, query, dict(self.headers), body))
        payload = b"" if self.command == "HEAD" else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _record

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture(scope="module")
def capture() -> Iterator[tuple[str, list[Captured]]]:
    captured: list[Captured] = []
    handler = type("Capture", (_Capture,), {"captured": captured})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", captured
    finally:
        server.shutdown()
        server.server_close()


def sent(capture: tuple[str, list[Captured]], service: str, call: Callable[[Any], Any]) -> Call:
    """Classify the one request botocore sends for ``call`` (its answer is ignored)."""
    url, captured = capture
    client = boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    captured.clear()
    with contextlib.suppress(Exception):  # the canned answer need not parse; the request counts
        call(client)
    assert len(captured) == 1, captured
    c = captured[0]
    return classify(c.method, c.path, c.query, c.headers, c.body)


pytestmark = pytest.mark.unit

SQS_CASES = [
    ("ReceiveMessage", lambda c: c.receive_message(QueueUrl=QUEUE, MaxNumberOfMessages=10)),
    ("DeleteMessage", lambda c: c.delete_message(QueueUrl=QUEUE, ReceiptHandle="r")),
    (
        "DeleteMessageBatch",
        lambda c: c.delete_message_batch(
            QueueUrl=QUEUE, Entries=[{"Id": "1", "ReceiptHandle": "r"}]
        ),
    ),
    (
        "ChangeMessageVisibility",
        lambda c: c.change_message_visibility(
            QueueUrl=QUEUE, ReceiptHandle="r", VisibilityTimeout=30
        ),
    ),
    (
        "ChangeMessageVisibilityBatch",
        lambda c: c.change_message_visibility_batch(
            QueueUrl=QUEUE, Entries=[{"Id": "1", "ReceiptHandle": "r", "VisibilityTimeout": 9}]
        ),
    ),
    ("SendMessage", lambda c: c.send_message(QueueUrl=QUEUE, MessageBody="x")),
    ("GetQueueAttributes", lambda c: c.get_queue_attributes(QueueUrl=QUEUE)),
]


@pytest.mark.parametrize(("operation", "call"), SQS_CASES, ids=[c[0] for c in SQS_CASES])
def test_sqs_calls_are_named_from_botocores_requests(capture, operation, call):
    parsed = sent(capture, "sqs", call)
    assert (parsed.service, parsed.operation) == ("sqs", operation)
    assert (parsed.units, parsed.price_key) == (1, "sqs_request")


def test_botocore_sends_sqs_as_json_with_a_target_header(capture):
    _, captured = capture
    sent(capture, "sqs", SQS_CASES[0][1])
    assert captured[0].headers.get("X-Amz-Target") == "AmazonSQS.ReceiveMessage"


DDB_CASES = [
    (
        "UpdateItem",
        lambda c: c.update_item(
            TableName=TABLE,
            Key=KEY,
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "running"}},
        ),
        1,
        "ddb_wru",
    ),
    ("PutItem", lambda c: c.put_item(TableName=TABLE, Item=KEY), 1, "ddb_wru"),
    ("GetItem", lambda c: c.get_item(TableName=TABLE, Key=KEY), 0.5, "ddb_rru"),
    (
        "GetItem",
        lambda c: c.get_item(TableName=TABLE, Key=KEY, ConsistentRead=True),
        1,
        "ddb_rru",
    ),
    (
        "TransactWriteItems",
        lambda c: c.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": KEY}},
                {"ConditionCheck": {"TableName": TABLE, "Key": KEY, "ConditionExpression": "a"}},
            ]
        ),
        4,
        "ddb_wru",
    ),
    (
        "BatchWriteItem",
        lambda c: c.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": KEY}}, {"DeleteRequest": {"Key": KEY}}]}
        ),
        2,
        "ddb_wru",
    ),
    (
        "TransactGetItems",
        lambda c: c.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": KEY}}]),
        2,
        "ddb_rru",
    ),
]


@pytest.mark.parametrize(
    ("operation", "call", "units", "key"),
    DDB_CASES,
    ids=[f"{c[0]}-{c[2]}" for c in DDB_CASES],
)
def test_dynamodb_calls_are_named_and_billed_in_request_units(capture, operation, call, units, key):
    parsed = sent(capture, "dynamodb", call)
    assert (parsed.service, parsed.operation, parsed.units, parsed.price_key) == (
        "dynamodb",
        operation,
        units,
        key,
    )


def test_sns_publish_is_a_query_protocol_action(capture):
    _, captured = capture
    parsed = sent(
        capture,
        "sns",
        lambda c: c.publish(TopicArn="arn:aws:sns:us-west-2:123456789012:t", Message="m"),
    )
    assert "X-Amz-Target" not in captured[0].headers
    assert b"Action=Publish" in captured[0].body
    assert (parsed.name, parsed.units, parsed.price_key) == ("sns:Publish", 1, "sns_request")


def test_a_large_publish_is_billed_per_64_kib_chunk(capture):
    parsed = sent(
        capture,
        "sns",
        lambda c: c.publish(TopicArn="arn:aws:sns:us-west-2:123456789012:t", Message="m" * 70_000),
    )
    assert parsed.units == 2


S3_CASES = [
    ("PutObject", lambda c: c.put_object(Bucket="b", Key="out/a.png", Body=b"png"), "s3_tier1"),
    ("GetObject", lambda c: c.get_object(Bucket="b", Key="a"), "s3_tier2"),
    ("HeadObject", lambda c: c.head_object(Bucket="b", Key="a"), "s3_tier2"),
    ("DeleteObject", lambda c: c.delete_object(Bucket="b", Key="a"), None),
    ("ListObjectsV2", lambda c: c.list_objects_v2(Bucket="b", Prefix="p/"), "s3_tier1"),
    (
        "CopyObject",
        lambda c: c.copy_object(Bucket="b", Key="a", CopySource={"Bucket": "b", "Key": "c"}),
        "s3_tier1",
    ),
    ("CreateMultipartUpload", lambda c: c.create_multipart_upload(Bucket="b", Key="a"), "s3_tier1"),
    (
        "UploadPart",
        lambda c: c.upload_part(Bucket="b", Key="a", UploadId="u", PartNumber=1, Body=b"x"),
        "s3_tier1",
    ),
    (
        "CompleteMultipartUpload",
        lambda c: c.complete_multipart_upload(
            Bucket="b",
            Key="a",
            UploadId="u",
            MultipartUpload={"Parts": [{"ETag": "e", "PartNumber": 1}]},
        ),
        "s3_tier1",
    ),
    (
        "AbortMultipartUpload",
        lambda c: c.abort_multipart_upload(Bucket="b", Key="a", UploadId="u"),
        None,
    ),
    ("HeadBucket", lambda c: c.head_bucket(Bucket="b"), "s3_tier2"),
]


@pytest.mark.parametrize(("operation", "call", "key"), S3_CASES, ids=[c[0] for c in S3_CASES])
def test_s3_calls_are_named_from_method_path_and_subresource(capture, operation, call, key):
    parsed = sent(capture, "s3", call)
    assert (parsed.service, parsed.operation, parsed.price_key) == ("s3", operation, key)


def test_an_unsigned_request_is_other_and_free():
    parsed = classify("GET", "/moto-api/", "", {}, b"")
    assert (parsed.service, parsed.cost_usd) == ("other", 0.0)


def test_received_messages_counts_json_and_query_answers():
    receive = Call("sqs", "ReceiveMessage")
    assert received_messages(receive, b'{"Messages": [{"Body": "a"}, {"Body": "b"}]}') == 2
    assert received_messages(receive, b"{}") == 0
    xml = b"<ReceiveMessageResult><Message><Body>a</Body></Message></ReceiveMessageResult>"
    assert received_messages(receive, xml) == 1
    assert received_messages(Call("sqs", "DeleteMessage"), b"{}") is None


# ----------------------------------------------------------------------------- cost


def test_cost_per_1000_tasks_at_list_prices():
    # one task's calls, ten tasks: receive + delete, five status writes, one publish, two puts
    counts = {
        "sqs:ReceiveMessage": (10, 10.0, "sqs_request"),
        "sqs:DeleteMessage": (10, 10.0, "sqs_request"),
        "dynamodb:UpdateItem": (50, 50.0, "ddb_wru"),
        "sns:Publish": (10, 10.0, "sns_request"),
        "s3:PutObject": (20, 20.0, "s3_tier1"),
        "s3:DeleteObject": (5, 0.0, None),
    }
    per_task = 2 * 0.40e-6 + 5 * 0.625e-6 + 0.50e-6 + 2 * 0.005e-3
    assert cost_per_1000(counts, 10) == pytest.approx(per_task * 1000)
    assert cost_per_1000(counts, 10) == pytest.approx(0.014425)
    assert calls_by_service(counts) == {"dynamodb": 50, "s3": 25, "sns": 10, "sqs": 20}


def test_price_table_is_per_request_unit():
    assert PRICES_USD["sqs_request"] * 1_000_000 == pytest.approx(0.40)
    assert PRICES_USD["s3_tier1"] * 1_000 == pytest.approx(0.005)
    assert PRICES_USD["ddb_wru"] == pytest.approx(5 * PRICES_USD["ddb_rru"])


# ----------------------------------------------------------------------------- verdict


def judge(**overrides: Any):
    args: dict[str, Any] = {
        "gen_s": 0.1,
        "duty_cycle": 0.96,
        "calls_per_task": 5.5,
        "emulator_share": 0.4,
        "foreign_share": 0.0,
        "starved_receives": 0,
    }
    return verdict(**(args | overrides))


def test_verdict_agent_bound_and_goals_met():
    v = judge()
    assert (v.bottleneck, v.meets_goals) == ("agent", True)
    assert v.line.startswith("agent-bound; goals met")


def test_verdict_names_each_missed_goal():
    v = judge(duty_cycle=0.94, calls_per_task=9.9)
    assert not v.meets_goals
    assert "duty 0.940 < 0.95" in v.line and "9.9 calls/task > 6" in v.line
    assert "duty 0.990 >= 0.99" in judge(gen_s=0.5, duty_cycle=0.99).line


def test_verdict_blames_a_saturated_emulator_before_anything_else():
    v = judge(duty_cycle=0.94, emulator_share=0.9, foreign_share=0.5, starved_receives=3)
    assert (v.bottleneck, v.meets_goals) == ("emulator", False)
    assert v.line.startswith("EMULATOR-BOUND (emulator side 90% of its core)")
    assert judge(emulator_share=0.84).bottleneck == "agent"
    # The goal met on a saturated emulator side: the duty cycle is a lower bound of the agent's.
    busy = judge(duty_cycle=0.96, emulator_share=0.9)
    assert (busy.bottleneck, busy.meets_goals) == ("emulator", True)
    assert busy.line.startswith("EMULATOR-BUSY (emulator side 90% of its core)")


def test_verdict_reports_starvation_then_foreign_load():
    assert judge(starved_receives=2).line.startswith("FEED-BOUND (2 empty receives")
    noisy = judge(foreign_share=0.3)
    assert (noisy.bottleneck, noisy.meets_goals) == ("machine", True)
    assert "30% of the agent's core" in noisy.line
    assert "30% of the machine" in judge(foreign_share=0.3, foreign_scope="the machine").line
