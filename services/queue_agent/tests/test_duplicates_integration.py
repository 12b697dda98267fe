"""Issue 14 case 2: SQS delivers a task more than once while it runs. Two real agents on the
moto server and one runtime emulator: the task generates once and is announced once."""

from __future__ import annotations

import asyncio

import pytest
from agent_stack import Stack, task

from sdq_runtime_emulator import running_emulator
from sdq_runtime_emulator.app import STATE

pytestmark = pytest.mark.integration


async def _until_running(stack: Stack, task_id: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        item = await asyncio.to_thread(
            stack.client("dynamodb").get_item,
            TableName=stack.prov.status_table,
            Key={"id": {"S": task_id}},
        )
        if item.get("Item", {}).get("status", {}).get("S") == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_id} never started running")


async def test_concurrent_duplicate_deliveries_generate_and_notify_once(stack: Stack) -> None:
    message = task("dup", content={"prompt": "x", "width": 64, "height": 64})
    stack.submit(message)  # the API's row and the original on the topic
    body = message.model_dump_json(exclude_none=True)
    for _ in range(3):  # duplicates of the same task, on the queue at the same time
        stack.send_raw("sdruntime", body)
    async with running_emulator(generation_latency_s=3.0) as emu:
        # A short lease (= visibility), so a handed-back duplicate comes back within the test.
        # prefetch 0: each agent claims one copy at a time (moto's conditional writes are not
        # atomic under concurrent requests, DynamoDB's are; the fake-based unit test covers
        # simultaneous claims).
        def agent() -> asyncio.Task[int]:
            run = stack.run_burst(
                "sdruntime", emu.url, timeout=90, visibility_seconds=3, prefetch=0
            )
            return asyncio.create_task(run)

        first = agent()
        await _until_running(stack, "dup")
        second = agent()  # a second agent receives the duplicates while the first generates
        assert list(await asyncio.gather(first, second)) == [0, 0]
        stats = emu.app[STATE].stats.sdwebui
    assert stats.generations_started == 1
    notes = stack.notifications(1)
    assert [(n["id"], n["status"]) for n in notes] == [("dup", "completed")]
    record = stack.status("dup")
    assert record.status.value == "completed" and record.attempts == 1
    raw = stack.client("dynamodb").get_item(
        TableName=stack.prov.status_table, Key={"id": {"S": "dup"}}
    )["Item"]
    assert "holder" not in raw and "lease_until" not in raw
    assert stack.dlq_bodies("sdruntime") == []
    assert len(stack.objects("itest/dup/")) == 2  # one image and the .out object, written once


async def test_the_message_that_settled_a_task_announces_again_its_copies_do_not(
    stack: Stack,
) -> None:
    """An agent wrote `completed` under a message and died before publishing and deleting it.
    That message comes back (same MessageId) beside three SNS-duplicate copies, handled by two
    agents at once: one notification (from the settling message), no generation, nothing left
    on the queue."""
    message = task("settled", content={"prompt": "x", "width": 64, "height": 64})
    stack.submit(message)
    sqs, ddb = stack.client("sqs"), stack.client("dynamodb")
    queue_url = stack.prov.queue_urls["sdruntime"]
    [received] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    outputs = ["s3://itest-outputs/itest/settled/settled-1.png"]
    ddb.update_item(  # what the dead agent's final write left
        TableName=stack.prov.status_table,
        Key={"id": {"S": "settled"}},
        UpdateExpression="SET #s = :c, outputs = :o, settled_by = :m, attempts = :one",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":c": {"S": "completed"},
            ":o": {"L": [{"S": o} for o in outputs]},
            ":m": {"S": received["MessageId"]},
            ":one": {"N": "1"},
        },
    )
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0
    )
    for _ in range(3):
        stack.send_raw("sdruntime", message.model_dump_json(exclude_none=True))
    async with running_emulator() as emu:
        runs = [stack.run_burst("sdruntime", emu.url, timeout=60) for _ in range(2)]
        assert list(await asyncio.gather(*runs)) == [0, 0]
        assert emu.app[STATE].stats.sdwebui.generations_started == 0
    notes = stack.notifications(1)
    assert [(n["id"], n["status"], n["image_url"]) for n in notes] == [
        ("settled", "completed", outputs)
    ]
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    assert stack.dlq_bodies("sdruntime") == []
