"""Issue 18: AWS calls per task on the agent's hot path (at most six). N tasks of one image each run through
the real agent (settings, clients, adapters as deployed) against the moto server and the
runtime emulator; every AWS call the agent makes is counted by service and operation through
botocore's own event hooks on the agent's clients."""

from __future__ import annotations

import collections
from contextlib import AsyncExitStack
from typing import Any

import pytest
from agent_stack import Stack, task

import sdq_queue_agent.app as agent_app
from sdq_queue_agent.settings import AgentSettings
from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration

# Calls made once per agent, not per task: the start-up check and warm-ups, and burst mode's
# "is the queue empty" check.
START_UP = {"sqs.GetQueueAttributes", "dynamodb.GetItem", "s3.HeadObject"}
MAX_CALLS_PER_TASK = 6


class CallCounter:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.empty_receives = 0

    def hook(self, service: str) -> Any:
        def after_call(*, model: Any, parsed: Any, **_: Any) -> None:
            name = f"{service}.{model.name}"
            if name == "sqs.ReceiveMessage" and not parsed.get("Messages"):
                self.empty_receives += 1  # idle polls once the backlog is gone
                return
            self.calls[name] += 1

        return after_call

    def per_task(self, tasks: int) -> dict[str, float]:
        return {
            name: round(count / tasks, 3)
            for name, count in sorted(self.calls.items())
            if name not in START_UP
        }


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    counter = CallCounter()
    real_open = agent_app.open_clients

    async def counting_open(stack: AsyncExitStack, settings: AgentSettings) -> Any:
        clients = await real_open(stack, settings)
        for service in ("sqs", "s3", "sns", "dynamodb"):
            getattr(clients, service).meta.events.register(
                f"after-call.{service}", counter.hook(service)
            )
        return clients

    monkeypatch.setattr(agent_app, "open_clients", counting_open)
    return counter


@pytest.mark.parametrize(
    ("generation_s", "tasks"),
    [(0.05, 40), (0.5, 24)],  # the benchmark's two speeds (0.1 s and 0.5 s per image), roughly
)
async def test_hot_path_makes_at_most_six_aws_calls_per_task(
    stack: Stack, counter: CallCounter, generation_s: float, tasks: int
) -> None:
    ids = [f"calls-{n:02d}" for n in range(tasks)]
    for task_id in ids:  # the backlog is there before the agent starts
        stack.submit(task(task_id, content={"prompt": "x", "width": 64, "height": 64}))
    async with running_emulator(generation_latency_s=generation_s) as emu:
        assert await stack.run_burst("sdruntime", emu.url, timeout=100) == 0
    notes = stack.notifications(tasks, timeout=20)
    assert sorted(n["id"] for n in notes) == ids  # each task announced exactly once
    assert {n["status"] for n in notes} == {"completed"}
    assert len(stack.objects("itest/calls-")) == 2 * tasks  # one image + .out per task

    table = counter.per_task(tasks)
    total = round(sum(table.values()), 3)
    print(f"\nAWS calls per task ({tasks} tasks of {generation_s} s): {table} total={total}")
    # Exactly-once bookkeeping is per task; everything else must be amortised: the
    # `announced` marks are one TransactWriteItems per delete batch.
    assert table.get("dynamodb.UpdateItem", 0) <= 2.0, table
    marks = table.get("dynamodb.TransactWriteItems", 0)
    assert 0 < marks <= table["sqs.DeleteMessageBatch"] <= 0.25, table
    ddb = stack.client("dynamodb")
    rows = [
        ddb.get_item(TableName=stack.prov.status_table, Key={"id": {"S": t}})["Item"] for t in ids
    ]
    assert all(row["announced"] == {"BOOL": True} for row in rows)
    assert table.get("s3.PutObject") == 2.0 and table.get("sns.Publish") == 1.0, table
    assert total <= MAX_CALLS_PER_TASK, table
