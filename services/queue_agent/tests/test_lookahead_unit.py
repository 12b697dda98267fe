"""Runtime look-ahead against a fake SD WebUI (one FIFO lock, a global interrupt): the next
request waits at the runtime while the current one generates, and nothing about a task's
outcome changes: cancels, deadlines, interrupts and drains give the same results as without it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from agent_fakes import Harness, make_harness, task_body, virtual_time

from sdq_contracts.keys import image_key, response_key
from sdq_contracts.messages import TaskState
from sdq_queue_agent.domain.model import RuntimeRequest

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
async def _virtual_time() -> AsyncIterator[None]:
    with virtual_time():
        yield


def sd_webui_like(**config: object) -> Harness:
    h = make_harness(**({"prefetch": 4} | config))
    h.runtime.queues_requests = True
    h.runtime.generation_s = 1.0
    return h


def outcomes(h: Harness) -> dict[str, TaskState]:
    return {note.id: note.status for note in h.publisher.published}


def answer_info(h: Harness, task_id: str) -> str:
    out = json.loads(h.store.objects[("outputs", response_key("out", task_id))][0])
    info: str = out["info"]
    return info


@pytest.mark.parametrize("lookahead", [True, False])
async def test_the_next_request_is_at_the_runtime_before_the_current_one_ends(
    lookahead: bool,
) -> None:
    h = sd_webui_like(lookahead=lookahead)
    for n in (1, 2, 3):
        h.queue.send(task_body(f"t{n}"))
    await h.burst()

    events = h.runtime.events
    for before, after in (("t1", "t2"), ("t2", "t3")):
        sent_ahead = events.index(("sent", after)) < events.index(("done", before))
        assert sent_ahead is lookahead
        # The runtime still runs them one at a time, in order.
        assert events.index(("done", before)) < events.index(("run", after))
    assert outcomes(h) == dict.fromkeys(("t1", "t2", "t3"), TaskState.COMPLETED)
    assert h.runtime.runs == {"t1": 1, "t2": 1, "t3": 1}
    assert sorted(h.queue.deleted) == ["m1", "m2", "m3"] and not h.queue.messages


async def test_a_task_cancelled_while_queued_at_the_runtime_ends_cancelled() -> None:
    """t2's request waits behind t1 when its cancel arrives: t2 ends cancelled with no output,
    t1 completes."""
    h = sd_webui_like(visibility=2, cancel_poll_seconds=0.2)

    async def t1(_: RuntimeRequest) -> None:
        await asyncio.sleep(0.1)  # t2's request goes out behind this generation
        assert ("sent", "t2") in h.runtime.events
        h.status.rows["t2"]["cancel_requested"] = True
        await asyncio.sleep(1.5)  # past t2's lease renew, which reads the cancel

    h.runtime.behaviours["t1"] = t1
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    await h.burst()

    assert outcomes(h) == {"t1": TaskState.COMPLETED, "t2": TaskState.CANCELLED}
    assert h.status.rows["t2"]["status"] == TaskState.CANCELLED
    assert ("outputs", image_key("out", "t2", 1)) not in h.store.objects
    assert ("outputs", image_key("out", "t1", 1)) in h.store.objects
    assert sorted(h.queue.deleted) == ["m1", "m2"]


async def test_an_interrupt_that_lands_on_the_queued_task_makes_it_generate_again() -> None:
    """t1 is cancelled as it finishes on its own; the interrupt reaches the runtime after t1
    ended and stops t2, which the runtime then answers early (SD WebUI's interrupt is global,
    and its answer does not say it was interrupted). t2 generates again: its stored answer is
    a whole generation, never the interrupted one."""
    h = sd_webui_like(cancel_poll_seconds=0.2)
    h.runtime.interrupt_lands_after = 1.5

    async def t1(_: RuntimeRequest) -> None:
        h.status.rows["t1"]["cancel_requested"] = True
        await asyncio.sleep(1.0)  # ends on its own before the interrupt lands

    h.runtime.behaviours["t1"] = t1
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    await h.burst()

    assert h.runtime.interrupted == ["t1"]
    assert outcomes(h) == {"t1": TaskState.CANCELLED, "t2": TaskState.COMPLETED}
    assert h.runtime.runs["t2"] == 2
    assert answer_info(h, "t2") == "{}"


async def test_a_queued_task_s_deadline_counts_from_when_it_starts() -> None:
    """Each generation takes 1 s against a 1.5 s deadline; t2 waits 1 s at the runtime first,
    so 2 s pass between its send and its answer: it completes."""
    h = sd_webui_like(task_timeout=1.5)
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    await h.burst()

    assert outcomes(h) == {"t1": TaskState.COMPLETED, "t2": TaskState.COMPLETED}
    assert h.runtime.interrupted == []
    assert answer_info(h, "t2") == "{}"


async def test_stop_lets_the_generating_and_the_queued_task_finish() -> None:
    """SIGTERM while t1 generates and t2 waits at the runtime: both finish within the drain
    budget; t3, only prepared, goes back to the queue."""
    h = sd_webui_like(drain_seconds=10)
    for n in (1, 2, 3):
        h.queue.send(task_body(f"t{n}"))
    worker = h.worker()
    running = asyncio.create_task(worker.run())

    async def stop_when_t2_is_queued() -> None:
        while ("sent", "t2") not in h.runtime.events:
            await asyncio.sleep(0.05)
        worker.stop()

    async with asyncio.timeout(30):
        await asyncio.gather(running, stop_when_t2_is_queued())

    assert outcomes(h) == {"t1": TaskState.COMPLETED, "t2": TaskState.COMPLETED}
    assert h.runtime.runs == {"t1": 1, "t2": 1}
    assert sorted(h.queue.deleted) == ["m1", "m2"]
    assert [json.loads(m.body)["id"] for m in h.queue.messages.values()] == ["t3"]
    assert "t3" not in h.runtime.runs
