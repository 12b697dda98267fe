"""One scenario suite for the status row, run against the in-memory fake (unit) and the real
DynamoDB adapter on the moto server (integration): the two must give the same answers, so a
fake never accepts what DynamoDB refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
import boto3
import pytest
from agent_fakes import FakeStatus
from boto3.dynamodb.types import TypeDeserializer

from sdq_contracts import status
from sdq_contracts.messages import TaskError, TaskState
from sdq_queue_agent.adapters.aws import DynamoStatusStore
from sdq_queue_agent.domain.model import ClaimOutcome, NewRow
from sdq_queue_agent.domain.ports import StatusStore

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROW = NewRow("sdruntime", "text-to-image", "s3://outputs/out/t1", expires_at=1_900_000_000)
ERROR = TaskError(code="runtime_unavailable", message="down", permanent=False)
TABLE = "scenario-status"


def lease(now: datetime, seconds: int = 30) -> int:
    return int(now.timestamp()) + seconds


class Subject:
    """A status store plus a way to read (and seed) its raw rows."""

    def __init__(self, store: StatusStore, rows: Any) -> None:
        self.store = store
        self._rows = rows

    async def row(self, task_id: str) -> dict[str, Any] | None:
        return await self._rows("get", task_id, None)  # type: ignore[no-any-return]

    async def put(self, item: dict[str, Any]) -> None:
        await self._rows("put", item["id"], item)


@pytest.fixture(
    params=[
        pytest.param("fake", marks=pytest.mark.unit),
        pytest.param("dynamodb", marks=pytest.mark.integration),
    ]
)
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "fake":
        fake = FakeStatus()

        async def fake_rows(op: str, task_id: str, item: dict[str, Any] | None) -> Any:
            if op == "put" and item is not None:
                fake.rows[task_id] = dict(item)
            return fake.rows.get(task_id)

        yield Subject(fake, fake_rows)
        return
    aws = request.getfixturevalue("aws")
    sync = boto3.client("dynamodb", region_name="us-west-2", endpoint_url=aws.endpoint_url)
    sync.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = boto3.resource(
        "dynamodb", region_name="us-west-2", endpoint_url=aws.endpoint_url
    ).Table(TABLE)
    de = TypeDeserializer()

    async def ddb_rows(op: str, task_id: str, item: dict[str, Any] | None) -> Any:
        if op == "put" and item is not None:
            table.put_item(Item=item)
        got = sync.get_item(TableName=TABLE, Key={"id": {"S": task_id}}, ConsistentRead=True)
        raw = got.get("Item")
        return {k: _plain(de.deserialize(v)) for k, v in raw.items()} if raw else None

    session = aioboto3.Session(region_name="us-west-2")
    async with session.client("dynamodb", endpoint_url=aws.endpoint_url) as client:
        yield Subject(DynamoStatusStore(client, TABLE), ddb_rows)


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the fake holds ints."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value)
    return value


def queued(task_id: str = "t1", **fields: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "runtime": "sdruntime",
        "tasktype": "text-to-image",
        "output_location": "s3://outputs/out/t1",
        "created_at": "2026-06-01T11:00:00+00:00",
        "expires_at": 1_800_000_000,
        "status": "queued",
        "attempts": 0,
    } | fields


async def test_claim_of_a_missing_row_writes_a_whole_row_with_its_ttl(subject: Subject) -> None:
    claim = await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    assert claim.outcome is ClaimOutcome.CLAIMED
    row = await subject.row("t1")
    assert row is not None
    assert row["status"] == "running" and row["attempts"] == 1
    assert row["expires_at"] == 1_900_000_000 and row["output_location"] == ROW.output_location
    assert row["holder"] == "a/1" and row["lease_until"] == lease(T0)


async def test_a_live_lease_refuses_a_second_holder_until_it_expires(subject: Subject) -> None:
    await subject.put(queued())
    assert (await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))).outcome.value == "claimed"
    later = T0 + timedelta(seconds=10)
    second = await subject.store.claim("t1", ROW, later, "b/2", lease(later))
    assert second.outcome is ClaimOutcome.HELD_ELSEWHERE and second.lease_until == lease(T0)
    assert (await subject.store.renew("t1", "b/2", lease(later), "generating", later)).held is False
    assert await subject.store.complete("t1", "b/2", ["s3://x"], later, settled_by="m2") is False
    expired = T0 + timedelta(seconds=31)
    third = await subject.store.claim("t1", ROW, expired, "b/2", lease(expired))
    assert third.outcome is ClaimOutcome.CLAIMED
    row = await subject.row("t1")
    assert row is not None and row["holder"] == "b/2" and row["attempts"] == 2
    # the first holder lost the task: it may neither renew nor complete it
    renewal = await subject.store.renew("t1", "a/1", lease(expired), "generating", expired)
    assert renewal.held is False
    assert await subject.store.complete("t1", "a/1", ["s3://x"], expired, settled_by="m1") is False


async def test_complete_then_every_later_claim_is_already_done(subject: Subject) -> None:
    await subject.put(queued())
    await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    assert await subject.store.complete("t1", "a/1", ["s3://o/1.png"], T0, settled_by="m1") is True
    row = await subject.row("t1")
    assert row is not None and row["status"] == "completed" and row["settled_by"] == "m1"
    assert not {"holder", "lease_until", "stage", "announced"} & set(row)
    again = await subject.store.claim("t1", ROW, T0, "b/2", lease(T0))
    assert again.outcome is ClaimOutcome.ALREADY_DONE
    assert again.record is not None and again.record.outputs == ["s3://o/1.png"]
    # the message that settled it owes the notification again; any other copy does not
    assert status.announcement(dict(again.row or {}), "m1") == "announce"
    assert status.announcement(dict(again.row or {}), "m2") == "none"


async def test_renew_records_the_stage_and_answers_a_cancel_request(subject: Subject) -> None:
    await subject.put(queued())
    await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    row = await subject.row("t1")
    assert row is not None and row["stage"] == "preparing"  # the claim's own stage
    later = T0 + timedelta(seconds=10)
    renewal = await subject.store.renew("t1", "a/1", lease(later), "generating", later)
    assert (renewal.held, renewal.cancel_requested) == (True, False)
    row = await subject.row("t1")
    assert row is not None and row["stage"] == "generating"
    assert row["lease_until"] == lease(later) and row["updated_at"] == later.isoformat()
    await subject.put(row | {"cancel_requested": True})  # the API asks to cancel
    renewal = await subject.store.renew("t1", "a/1", lease(later), "generating", later)
    assert (renewal.held, renewal.cancel_requested) == (True, True)


async def test_final_writes_of_another_message_are_refused(subject: Subject) -> None:
    """Two copies of one task (SNS/SQS duplicates): the second copy's final write is refused,
    so it publishes nothing; the settling message may write again (its own retry)."""
    await subject.put(queued(status="running", cancel_requested=True))
    assert await subject.store.cancelled("t1", T0, "m1") is True
    assert await subject.store.cancelled("t1", T0, "m2") is False
    assert await subject.store.cancelled("t1", T0, "m1") is True  # the same message again
    row = await subject.row("t1")
    assert row is not None and row["settled_by"] == "m1"
    await subject.store.fail("t2", ERROR, T0, ROW, "m1")
    assert await subject.store.fail("t2", ERROR, T0, ROW, "m2") is False
    assert await subject.store.fail("t2", ERROR, T0, ROW, "m1") is True
    row = await subject.row("t2")
    assert row is not None and row["settled_by"] == "m1"


async def test_an_ownerless_ended_row_is_adopted_by_one_copy(subject: Subject) -> None:
    """The API's cancel of a queued task leaves no owner: the first copy to adopt the
    announcement wins, the others find it owned."""
    await subject.put(queued(status="cancelled", announced=False))
    row = await subject.row("t1")
    assert status.announcement(row, "m1") == "adopt"
    assert await subject.store.adopt("t1", "m1") is True
    assert await subject.store.adopt("t1", "m2") is False
    row = await subject.row("t1")
    assert row is not None and row["settled_by"] == "m1" and "announced" not in row
    assert status.announcement(row, "m1") == "announce"
    assert status.announcement(row, "m2") == "none"
    # a row announced by an older agent (announced: true, no owner) owes nothing
    await subject.put(queued("t2", status="completed", announced=True))
    assert await subject.store.adopt("t2", "m1") is False
    assert status.announcement(await subject.row("t2"), "m1") == "none"


async def test_waiting_to_retry_shows_the_error_and_frees_the_row(subject: Subject) -> None:
    await subject.put(queued())
    await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    retry_at = T0 + timedelta(seconds=20)
    await subject.store.wait_to_retry("t1", "a/1", ERROR, retry_at, T0)
    row = await subject.row("t1")
    assert row is not None
    assert (row["status"], row["stage"], row["attempts"]) == ("running", "waiting_to_retry", 1)
    assert row["error"]["code"] == "runtime_unavailable" and row["retry_at"] == retry_at.isoformat()
    assert "holder" not in row
    # the next receive claims at once (no lease to wait out) and clears the retry marks
    claim = await subject.store.claim("t1", ROW, T0, "b/2", lease(T0))
    assert claim.outcome is ClaimOutcome.CLAIMED
    row = await subject.row("t1")
    assert row is not None and row["attempts"] == 2
    assert not {"error", "retry_at"} & set(row) and row["stage"] == "preparing"


async def test_release_lets_the_next_receive_claim_at_once(subject: Subject) -> None:
    await subject.put(queued())
    await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    await subject.store.release("t1", "b/2", T0)  # not the holder: no effect
    assert (await subject.store.claim("t1", ROW, T0, "b/2", lease(T0))).outcome.value == (
        "held_elsewhere"
    )
    await subject.store.release("t1", "a/1", T0)
    assert (await subject.store.claim("t1", ROW, T0, "b/2", lease(T0))).outcome.value == "claimed"


async def test_cancel_requested_and_cancelled_rows(subject: Subject) -> None:
    await subject.put(queued(status="running", cancel_requested=True))
    claim = await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    assert claim.outcome is ClaimOutcome.CANCEL_REQUESTED
    assert await subject.store.cancelled("t1", T0, "m1") is True
    assert await subject.store.complete("t1", "a/1", [], T0, settled_by="m1") is False
    row = await subject.row("t1")
    assert row is not None and row["status"] == "cancelled" and row["settled_by"] == "m1"
    # cancelled while queued by the API: the receiving agent adopts its announcement
    await subject.put(queued("t2", status="cancelled", announced=False))
    claim = await subject.store.claim("t2", ROW, T0, "a/1", lease(T0))
    assert claim.outcome is ClaimOutcome.ALREADY_DONE
    assert status.announcement(dict(claim.row or {}), "m9") == "adopt"
    assert claim.record is not None and claim.record.status is TaskState.CANCELLED


async def test_fail_creates_whole_rows_only_with_a_task_and_never_ends_twice(
    subject: Subject,
) -> None:
    assert await subject.store.fail("ghost", ERROR, T0, None, "m1") is False  # poison: no row
    assert await subject.row("ghost") is None
    assert await subject.store.fail("t1", ERROR, T0, ROW, "m1") is True
    row = await subject.row("t1")
    assert row is not None and row["status"] == "failed" and row["expires_at"] == 1_900_000_000
    assert row["output_location"] == ROW.output_location and "created_at" in row
    await subject.put(queued("t3", status="completed", outputs=["s3://o/1.png"]))
    assert await subject.store.fail("t3", ERROR, T0, ROW, "m1") is False
    row = await subject.row("t3")
    assert row is not None and row["status"] == "completed" and "error" not in row


async def test_permanent_failure_is_never_claimed_again_but_a_transient_one_is(
    subject: Subject,
) -> None:
    permanent = ERROR.model_copy(update={"permanent": True}).model_dump(mode="json")
    await subject.put(queued("p", status="failed", error=permanent))
    assert (await subject.store.claim("p", ROW, T0, "a/1", lease(T0))).outcome.value == (
        "already_done"
    )
    await subject.put(queued("t", status="failed", error=ERROR.model_dump(mode="json")))
    assert (await subject.store.claim("t", ROW, T0, "a/1", lease(T0))).outcome.value == "claimed"


async def test_renew_only_while_held(subject: Subject) -> None:
    await subject.put(queued())
    assert (await subject.store.renew("t1", "a/1", lease(T0), "generating", T0)).held is False
    row = await subject.row("t1")
    assert row is not None and "stage" not in row and "lease_until" not in row


async def test_marks_land_on_the_rows_their_messages_settled(subject: Subject) -> None:
    """One write marks a batch's announced rows; an item whose row another message settled (or
    that is not final) is left out and the others are still marked."""
    for task_id, settled_by in (("t1", "m1"), ("t2", "other"), ("t3", "m3")):
        await subject.put(queued(task_id, status="completed", settled_by=settled_by))
    await subject.put(queued("t4"))  # still queued: nothing to mark
    marked = await subject.store.mark_announced([("t1", "m1"), ("t2", "m2"), ("t3", "m3")])
    assert marked == {"t1", "t3"}
    assert await subject.store.mark_announced([("t4", "m4")]) == set()
    rows = {t: await subject.row(t) for t in ("t1", "t2", "t3", "t4")}
    assert [rows[t].get("announced") for t in ("t1", "t2", "t3", "t4")] == [  # type: ignore[union-attr]
        True,
        None,
        True,
        None,
    ]
    # Only the settling message's same-id copy finds the mark; others own nothing anyway.
    assert status.announcement(rows["t1"], "m1", now=T0, window=9) == "none"
    assert status.announcement(rows["t2"], "other", now=T0, window=9) == "announce"


async def test_a_marked_row_is_settled_again_unmarked(subject: Subject) -> None:
    """A mark belongs to one final write: the same message's later final write (a cancel
    re-settled by its own message) clears it."""
    await subject.put(queued())
    await subject.store.claim("t1", ROW, T0, "a/1", lease(T0))
    assert await subject.store.fail("t1", ERROR, T0, ROW, "m1") is True
    assert await subject.store.mark_announced([("t1", "m1")]) == {"t1"}
    assert await subject.store.fail("t1", ERROR, T0, ROW, "m1") is True
    row = await subject.row("t1")
    assert row is not None and "announced" not in row


async def test_adopting_stamps_the_start_of_the_same_message_window(subject: Subject) -> None:
    await subject.put(
        queued(status="cancelled", announced=False, updated_at="2026-01-01T00:00:00+00:00")
    )
    assert await subject.store.adopt("t1", "m1", T0) is True
    row = await subject.row("t1")
    assert row is not None and row["updated_at"] == T0.isoformat()
    later = T0 + timedelta(seconds=3)
    assert status.announcement(row, "m1", now=later, window=9) == "wait"
    assert status.announcement(row, "m1", now=later + timedelta(seconds=6), window=9) == "announce"
    assert await subject.store.mark_announced([("t1", "m1")]) == {"t1"}
    assert status.announcement(await subject.row("t1"), "m1", now=later, window=9) == "none"
