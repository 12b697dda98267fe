"""SQS at-least-once delivery through the real agent on the moto server: a second copy of the
SAME message (same MessageId, its own receipt handle) arriving while the original is held,
between its publish and its batch's mark, or after the mark, and the crash case (final write
done, nothing published or marked). Each time: exactly one notification.

moto never duplicates a message, so a copy is a real second message on the queue whose
MessageId the agent's queue adapter reports as the original's: deleting or handing back one
leaves the other, as with SQS's own copies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agent_stack import Stack, task

from sdq_queue_agent.adapters.aws import SqsQueue
from sdq_queue_agent.domain.model import ReceivedMessage
from sdq_runtime_emulator import running_emulator
from sdq_runtime_emulator.app import STATE

pytestmark = pytest.mark.integration


def _task_id(body: str) -> str:
    data = json.loads(body)
    if "Message" in data and "id" not in data:  # an SNS envelope
        data = json.loads(data["Message"])
    return str(data["id"])


class SameIdCopies:
    """Copies sent to the queue that the agent receives under the MessageId of their task's
    original message; every visibility change is recorded."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        self._stack = stack
        self.originals: dict[str, str] = {}  # task id -> its original's MessageId
        self.handed_back: list[tuple[str, int]] = []  # (MessageId the agent saw, seconds)
        self.first_hand_back = asyncio.Event()
        receive, set_visibility = SqsQueue.receive, SqsQueue.set_visibility

        async def receiving(
            queue: SqsQueue, max_messages: int, wait_seconds: int, visibility: int
        ) -> list[ReceivedMessage]:
            got = await receive(queue, max_messages, wait_seconds, visibility)
            return [self._as_seen(m) for m in got]

        async def handing_back(queue: SqsQueue, message: ReceivedMessage, seconds: int) -> None:
            self.handed_back.append((message.message_id, seconds))
            await set_visibility(queue, message, seconds)
            self.first_hand_back.set()

        monkeypatch.setattr(SqsQueue, "receive", receiving)
        monkeypatch.setattr(SqsQueue, "set_visibility", handing_back)

    def _as_seen(self, message: ReceivedMessage) -> ReceivedMessage:
        """Each task has one original here: any other message of that task is a copy (told by
        its body, not its MessageId: the agent may receive it before ``send`` returns)."""
        original = self.originals.setdefault(_task_id(message.body), message.message_id)
        return dataclasses.replace(message, message_id=original)

    def send(self, task_id: str) -> None:
        """A copy of the task's message, once the agent has received the original."""
        assert task_id in self.originals
        self._stack.client("sqs").send_message(
            QueueUrl=self._stack.prov.queue_urls["sdruntime"], MessageBody=_body(task_id)
        )


def _row(stack: Stack, task_id: str) -> dict[str, Any]:
    got = stack.client("dynamodb").get_item(
        TableName=stack.prov.status_table, Key={"id": {"S": task_id}}, ConsistentRead=True
    )
    return got["Item"]  # type: ignore[no-any-return]


def _queue_is_empty(stack: Stack) -> bool:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.prov.queue_urls["sdruntime"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return set(attributes.values()) == {"0"}


async def _until(stack: Stack, task_id: str, status: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        row = await asyncio.to_thread(_row, stack, task_id)
        if row.get("status", {}).get("S") == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_id} never reached {status}")


def _body(task_id: str) -> str:
    return task(task_id, content={"prompt": "x", "width": 64, "height": 64}).model_dump_json(
        exclude_none=True
    )


@pytest.fixture
def copies(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> SameIdCopies:
    return SameIdCopies(stack, monkeypatch)


async def test_a_copy_while_the_original_is_held(stack: Stack, copies: SameIdCopies) -> None:
    stack.submit(task("held", content={"prompt": "x", "width": 64, "height": 64}))
    async with running_emulator(generation_latency_s=2.0) as emu:
        # A short lease (= visibility), so the handed-back copy comes back within the test.
        agent = asyncio.create_task(
            stack.run_burst("sdruntime", emu.url, timeout=60, visibility_seconds=3)
        )
        await _until(stack, "held", "running")
        copies.send("held")
        assert await agent == 0
        assert emu.app[STATE].stats.sdwebui.generations_started == 1
    assert [(n["id"], n["status"]) for n in stack.notifications(1)] == [("held", "completed")]
    assert [mid for mid, _ in copies.handed_back] == [copies.originals["held"]]  # held elsewhere
    assert _row(stack, "held")["announced"] == {"BOOL": True}
    assert _queue_is_empty(stack)


async def test_a_copy_between_the_publish_and_the_mark(
    stack: Stack, copies: SameIdCopies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first task published; a copy of its message arrives before its delete batch
    marks the row (the mark is held until the copy was answered, so the order is certain):
    no mark yet, so the copy is handed back for the window (2 x 2 s + 5 s), then finds it."""
    import sdq_queue_agent.adapters.aws as aws

    publish, mark = aws.SnsPublisher.publish, aws.DynamoStatusStore.mark_announced
    first: list[str] = []

    async def publishing(publisher: Any, notification: Any) -> None:
        await publish(publisher, notification)
        if not first:
            first.append(notification.id)
            await asyncio.to_thread(copies.send, notification.id)

    async def marking(store: Any, marks: Any) -> set[str]:
        if first and first[0] in {task_id for task_id, _ in marks}:
            with contextlib.suppress(TimeoutError):  # no copy answered: the asserts tell
                await asyncio.wait_for(copies.first_hand_back.wait(), 20)
        return await mark(store, marks)

    monkeypatch.setattr(aws.SnsPublisher, "publish", publishing)
    monkeypatch.setattr(aws.DynamoStatusStore, "mark_announced", marking)
    stack.submit(task("a", content={"prompt": "x", "width": 64, "height": 64}))
    stack.submit(task("b", content={"prompt": "x", "width": 64, "height": 64}))
    async with running_emulator(generation_latency_s=1.5) as emu:
        assert (
            await stack.run_burst(
                "sdruntime", emu.url, timeout=60, delete_batch_seconds=2, prefetch=2
            )
            == 0
        )
    notes = stack.notifications(2)
    assert sorted((n["id"], n["status"]) for n in notes) == [
        ("a", "completed"),
        ("b", "completed"),
    ]
    [(mid, seconds)] = copies.handed_back
    assert mid == copies.originals[first[0]] and 8 <= seconds <= 9  # the window, less its age
    assert _row(stack, "a")["announced"] == _row(stack, "b")["announced"] == {"BOOL": True}
    assert _queue_is_empty(stack)


async def test_a_copy_after_the_mark(stack: Stack, copies: SameIdCopies) -> None:
    stack.submit(task("late", content={"prompt": "x", "width": 64, "height": 64}))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url, timeout=60) == 0
        assert _row(stack, "late")["announced"] == {"BOOL": True}
        copies.send("late")
        assert await stack.run_burst("sdruntime", emu.url, timeout=60) == 0
        assert emu.app[STATE].stats.sdwebui.generations_started == 1
    assert [(n["id"], n["status"]) for n in stack.notifications(1)] == [("late", "completed")]
    assert copies.handed_back == []
    assert _queue_is_empty(stack)


@pytest.mark.parametrize(("settled_ago", "hand_backs"), [(120, 0), (0, 1)])
async def test_a_crash_after_the_final_write_announces_once(
    stack: Stack, settled_ago: int, hand_backs: int
) -> None:
    """The agent wrote `completed` under the message and died: nothing published, no mark.
    The message comes back: settled longer ago than the window it announces at once;
    settled moments ago it waits the window out first. One notification, the row marked."""
    stack.submit(task("crashed", content={"prompt": "x", "width": 64, "height": 64}))
    sqs, ddb = stack.client("sqs"), stack.client("dynamodb")
    queue_url = stack.prov.queue_urls["sdruntime"]
    [received] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    outputs = ["s3://itest-outputs/itest/crashed/crashed-1.png"]
    stamp = (datetime.now(UTC) - timedelta(seconds=settled_ago)).isoformat()
    ddb.update_item(  # what the dead agent's final write left
        TableName=stack.prov.status_table,
        Key={"id": {"S": "crashed"}},
        UpdateExpression="SET #s = :c, outputs = :o, settled_by = :m, attempts = :one, "
        "finished_at = :t, updated_at = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":c": {"S": "completed"},
            ":o": {"L": [{"S": o} for o in outputs]},
            ":m": {"S": received["MessageId"]},
            ":one": {"N": "1"},
            ":t": {"S": stamp},
        },
    )
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0
    )
    handed_back: list[int] = []
    set_visibility = SqsQueue.set_visibility

    async def handing_back(queue: SqsQueue, message: ReceivedMessage, seconds: int) -> None:
        handed_back.append(seconds)
        await set_visibility(queue, message, seconds)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SqsQueue, "set_visibility", handing_back)
        async with running_emulator() as emu:
            # batch delay 1 s: the window is 2 x 1 + 5 = 7 s
            run = stack.run_burst("sdruntime", emu.url, timeout=60, delete_batch_seconds=1)
            assert await run == 0
            assert emu.app[STATE].stats.sdwebui.generations_started == 0
    notes = stack.notifications(1)
    assert [(n["id"], n["status"], n["image_url"]) for n in notes] == [
        ("crashed", "completed", outputs)
    ]
    assert len(handed_back) == hand_backs and all(6 <= s <= 7 for s in handed_back)
    assert _row(stack, "crashed")["announced"] == {"BOOL": True}
    assert _queue_is_empty(stack)
