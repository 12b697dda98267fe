"""The API's transitions of the status row, run against the in-memory fake (unit) and the real
DynamoDB adapter on the moto server (integration): the same answers from both."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from sdq_api_validator.adapters.aws import DynamoStatusStore
from sdq_contracts.status import ANNOUNCED, PUBLISH_LEASE_UNTIL

TABLE = "api-scenario-status"


@pytest.fixture(
    params=[
        pytest.param("fake", marks=pytest.mark.unit),
        pytest.param("dynamodb", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "fake":
        return request.getfixturevalue("h").store  # the harness's FakeStatusStore
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb", region_name="us-west-2")
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoStatusStore(client, TABLE)


def row(task_id: str = "t1", **fields: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "runtime": "sdruntime",
        "tasktype": "text-to-image",
        "status": "queued",
        "output_location": "s3://outputs/t1",
        "created_at": "2026-06-01T12:00:00+00:00",
        "updated_at": "2026-06-01T12:00:00+00:00",
        "expires_at": 1_900_000_000,
    } | fields


def test_create_once(store: Any) -> None:
    assert store.create(row("t1", **{PUBLISH_LEASE_UNTIL: 100})) is True
    assert store.create(row(status="running")) is False
    assert store.get("t1")["status"] == "queued"


def test_publish_lease_is_taken_over_once_and_only_after_expiry(store: Any) -> None:
    store.create(row("t1", **{PUBLISH_LEASE_UNTIL: 100}))
    assert store.take_publish_lease("t1", now=99, lease_until=130) is False  # creator alive
    assert store.take_publish_lease("t1", now=101, lease_until=131) is True
    assert store.take_publish_lease("t1", now=102, lease_until=132) is False  # one winner
    store.mark_published("t1")
    item = store.get("t1")
    assert "published_at" in item and PUBLISH_LEASE_UNTIL not in item
    assert store.take_publish_lease("t1", now=10_000, lease_until=10_030) is False
    store.mark_published("missing")  # never creates a partial row
    assert store.get("missing") is None


def test_cancel_queued_is_unannounced_and_running_only_asks(store: Any) -> None:
    store.create(row("q"))
    store.create(row("r", status="running"))
    cancelled = store.cancel_if_queued("q")
    assert cancelled["status"] == "cancelled" and cancelled[ANNOUNCED] is False
    assert store.cancel_if_queued("q") is None
    assert store.cancel_if_queued("r") is None
    assert store.request_cancel_if_running("r")["cancel_requested"] is True
    assert store.request_cancel_if_running("q") is None
    assert store.take_publish_lease("q", now=10**10, lease_until=10**10 + 30) is False
