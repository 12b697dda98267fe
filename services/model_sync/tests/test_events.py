from __future__ import annotations

import json
from typing import Any

import pytest

from sdq_model_sync.domain.commands import select_changes
from sdq_model_sync.domain.events import ChangeKind, EventOrigin, parse_event

pytestmark = pytest.mark.unit


def s3_record(key: str, event: str = "ObjectCreated:Put", bucket: str = "models") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventName": event,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3}},
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": f"m{i}", "receiptHandle": "r", "body": body}
            for i, body in enumerate(bodies)
        ]
    }


def test_single_direct_s3_record() -> None:
    parsed = parse_event(s3_event(s3_record("Stable-diffusion/a.safetensors")))
    assert parsed.origin is EventOrigin.S3
    [change] = parsed.changes
    assert (change.bucket, change.key, change.kind) == (
        "models",
        "Stable-diffusion/a.safetensors",
        ChangeKind.CREATED,
    )


def test_url_encoded_keys_are_decoded() -> None:
    parsed = parse_event(
        s3_event(s3_record("Lora/my+lora%2B%C3%A9+v2.safetensors"), s3_record("VAE/a%2Fb.pt"))
    )
    assert [c.key for c in parsed.changes] == ["Lora/my lora+é v2.safetensors", "VAE/a/b.pt"]


def test_removals_and_other_event_types() -> None:
    parsed = parse_event(
        s3_event(
            s3_record("a.ckpt", "ObjectRemoved:Delete"),
            s3_record("b.ckpt", "ObjectRemoved:DeleteMarkerCreated"),
            s3_record("c.ckpt", "LifecycleExpiration:Delete"),
            s3_record("d.ckpt", "ObjectRestore:Completed"),
        )
    )
    assert [(c.key, c.kind) for c in parsed.changes] == [
        ("a.ckpt", ChangeKind.REMOVED),
        ("b.ckpt", ChangeKind.REMOVED),
        ("c.ckpt", ChangeKind.REMOVED),
    ]
    assert parsed.ignored == ("event ObjectRestore:Completed",)


def test_sqs_batch_of_several_messages_keeps_message_ids() -> None:
    parsed = parse_event(
        sqs_event(
            json.dumps(s3_event(s3_record("a.safetensors"), s3_record("b.safetensors"))),
            json.dumps(s3_event(s3_record("c.safetensors", "ObjectRemoved:Delete"))),
        )
    )
    assert parsed.origin is EventOrigin.SQS
    assert [m.message_id for m in parsed.messages] == ["m0", "m1"]
    assert [c.key for c in parsed.changes] == ["a.safetensors", "b.safetensors", "c.safetensors"]


def test_sns_wrapped_and_sns_envelope_in_sqs() -> None:
    inner = json.dumps(s3_event(s3_record("x.pt")))
    via_sns = parse_event(
        {"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": inner}}]}
    )
    assert via_sns.origin is EventOrigin.SNS
    assert [c.key for c in via_sns.changes] == ["x.pt"]
    envelope = json.dumps({"Type": "Notification", "TopicArn": "arn:t", "Message": inner})
    assert [c.key for c in parse_event(sqs_event(envelope)).changes] == ["x.pt"]


def test_test_event_is_ignored_and_malformed_is_reported() -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "models"})
    parsed = parse_event(
        sqs_event(
            test_event,
            "not json",
            json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}),
            json.dumps(s3_event(s3_record("ok.pt"))),
        )
    )
    assert [c.key for c in parsed.changes] == ["ok.pt"]
    assert parsed.messages[0].ignored == ("s3:TestEvent",)
    assert parsed.messages[1].malformed[0].startswith("SQS body is not JSON")
    assert parsed.messages[2].malformed == ("S3 record without eventName or bucket name",)
    assert parse_event(["not", "a", "mapping"]).malformed == ("event is a list",)


def test_selection_ignores_other_buckets_prefixes_and_folder_markers() -> None:
    parsed = parse_event(
        s3_event(
            s3_record("models/Lora/a.safetensors"),
            s3_record("models/Lora/a.safetensors", bucket="someone-else"),
            s3_record("outputs/x.png"),
            s3_record("models/Lora/", "ObjectCreated:Put"),
        )
    )
    selection = select_changes(parsed.changes, "models", "models")
    assert [c.key for c in selection.relevant] == ["models/Lora/a.safetensors"]
    assert selection.skipped == (
        "other bucket someone-else",
        "outside prefix: outputs/x.png",
        "folder marker: models/Lora/",
    )
