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
