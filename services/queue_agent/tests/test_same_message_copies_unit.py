"""SQS at-least-once delivery: a second copy of the SAME message (same MessageId, its own
receipt handle) through the real worker on fakes and virtual time. Whenever it arrives, the
task is announced exactly once: the settling message marks the row ``announced`` in a batch
with its delete, and a copy that finds no mark while the original may still be on its way to
that batch is handed back until the window has passed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from agent_fakes import FakeQueue, FakeStatus, LoopClock, make_harness, task_body, virtual_time

from sdq_contracts.messages import ResultNotification, TaskState
from sdq_queue_agent.domain.deletes import BatchDeleter
from sdq_queue_agent.domain.model import RuntimeRequest
from sdq_queue_agent.errors import AwsError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
async def _virtual_time() -> AsyncIterator[None]:
    with virtual_time():
        yield


def _handed_back(queue: FakeQueue, mid: str) -> list[int]:
    return [seconds for m, seconds in queue.visibility_calls if m == mid]


async def test_a_copy_arriving_while_the_original_is_held_is_deleted_silently() -> None:
    h = make_harness(visibility=30, delete_delay=2.0)
    mid = h.queue.send(task_body("a"))

    async def generate(_: RuntimeRequest) -> None:
        h.queue.duplicate(mid)  # the copy is received while the original generates
        await asyncio.sleep(3)

    h.runtime.behaviours["a"] = generate
    await h.burst(timeout=120)
    assert [(n.id, n.status) for n in h.publisher.published] == [("a", TaskState.COMPLETED)]
    assert h.runtime.runs == {"a": 1}
    assert len(_handed_back(h.queue, mid)) == 1  # held elsewhere: back until the lease ends
    assert h.queue.deleted == [mid, mid] and not h.queue.messages
    assert h.status.rows["a"]["announced"] is True and h.status.rows["a"]["settled_by"] == mid


async def test_a_copy_arriving_between_the_publish_and_the_batch_waits_for_the_mark() -> None:
    """The original published and waits for its batch (another task generating keeps the
    batch open for up to 2 s); the copy finds the row settled by its MessageId but not marked,
    is handed back for the window (2 x 2 s + 5 s), then finds the mark."""
    h = make_harness(visibility=30, delete_delay=2.0, prefetch=1, task_timeout=60)
    first = h.queue.send(task_body("a"))
    h.queue.send(task_body("b"))

    def copy_after_publish(note: ResultNotification) -> None:
        if note.id == "a":
            h.queue.duplicate(first)

    async def slow(_: RuntimeRequest) -> None:
        await asyncio.sleep(10)

    h.publisher.after_publish = copy_after_publish
    h.runtime.behaviours["b"] = slow
    await h.burst(timeout=120)
    assert sorted((n.id, n.status) for n in h.publisher.published) == [
        ("a", TaskState.COMPLETED),
        ("b", TaskState.COMPLETED),
    ]
    assert _handed_back(h.queue, first) == [9]  # the copy saw no mark: the window
    assert h.queue.deleted.count(first) == 2 and not h.queue.messages
    assert h.status.rows["a"]["announced"] is True


async def test_a_copy_arriving_after_the_mark_is_deleted_silently() -> None:
    h = make_harness(visibility=30)
    mid = h.queue.send(task_body("a"))
    await h.burst()
    assert h.status.rows["a"]["announced"] is True
    h.queue.duplicate(mid)
    await h.burst()
    assert [n.id for n in h.publisher.published] == ["a"]
    assert h.queue.deleted == [mid, mid] and not h.queue.messages
    assert _handed_back(h.queue, mid) == []


@pytest.mark.parametrize(("finished_ago", "hand_backs"), [(60.0, 0), (0.0, 1)])
async def test_a_crash_after_the_final_write_is_announced_once(
    finished_ago: float, hand_backs: int
) -> None:
    """The agent wrote `completed` under the message and died before publishing and marking:
    the message comes back. Settled longer ago than the window it announces at once; settled
    moments ago (its visibility was short) it waits out the window first, then announces."""
    h = make_harness(visibility=30, delete_delay=2.0)
    mid = h.queue.send(task_body("a"))
    stamp = (datetime.now(UTC) - timedelta(seconds=finished_ago)).isoformat()
    h.status.seed(
        "a",
        status="completed",
        settled_by=mid,
        outputs=["s3://outputs/out/a/a-1.png"],
        attempts=1,
        finished_at=stamp,
        updated_at=stamp,
    )
    await h.burst(timeout=60)
    [note] = h.publisher.published
    assert (note.id, note.status, note.image_url) == (
        "a",
        TaskState.COMPLETED,
        ["s3://outputs/out/a/a-1.png"],
    )
    assert h.runtime.runs == {}
    assert len(_handed_back(h.queue, mid)) == hand_backs
    assert h.queue.deleted == [mid] and h.status.rows["a"]["announced"] is True


# --------------------------------------------------------------------------- the batch's mark


async def _delete_all(deleter: BatchDeleter, queue: FakeQueue, marks: list[str | None]) -> None:
    messages = await queue.receive(10, 0, 30)
    runner = asyncio.create_task(deleter.run())
    try:
        waits = [deleter.delete(m, announced=mark) for m, mark in zip(messages, marks, strict=True)]
        results = await asyncio.gather(*waits, return_exceptions=True)
    finally:
        runner.cancel()
    assert results == [None] * len(messages)


async def test_one_write_marks_the_batch_and_a_refused_mark_spares_the_others() -> None:
    queue, status = FakeQueue(), FakeStatus()
    mids = [queue.send(task_body(t)) for t in ("t1", "t2", "t3", "t4")]
    for task_id, settled_by in (("t1", mids[0]), ("t2", "another"), ("t3", mids[2])):
        status.seed(task_id, status="completed", settled_by=settled_by)
    deleter = BatchDeleter(queue, LoopClock(), max_delay=1.0, status=status)
    # t4's message announced nothing (a silent delete): no mark for it
    await _delete_all(deleter, queue, ["t1", "t2", "t3", None])
    assert status.mark_batches == [[("t1", mids[0]), ("t2", mids[1]), ("t3", mids[2])]]
    assert [status.rows[t].get("announced") for t in ("t1", "t2", "t3")] == [True, None, True]
    assert queue.delete_calls == [4] and sorted(queue.deleted) == sorted(mids)


async def test_the_deletes_go_even_when_the_mark_fails() -> None:
    queue, status = FakeQueue(), FakeStatus()
    mids = [queue.send(task_body(t)) for t in ("t1", "t2")]
    for task_id, mid in zip(("t1", "t2"), mids, strict=True):
        status.seed(task_id, status="completed", settled_by=mid)
    status.fail_marks = AwsError("TransactWriteItems failed: InternalServerError")
    deleter = BatchDeleter(queue, LoopClock(), max_delay=1.0, status=status)
    await _delete_all(deleter, queue, ["t1", "t2"])
    assert status.calls["mark_announced"] == 1
    assert queue.delete_calls == [2] and sorted(queue.deleted) == sorted(mids)
    assert all("announced" not in status.rows[t] for t in ("t1", "t2"))


async def test_a_flush_with_nothing_pending_does_not_send_the_next_delete_alone() -> None:
    """The queue ran dry while no delete waited: the next settled message still waits for its
    batch (so a same-id copy received meanwhile finds the window, and batches stay full)."""
    queue = FakeQueue()
    for t in ("t1", "t2"):
        queue.send(task_body(t))
    deleter = BatchDeleter(queue, LoopClock(), max_delay=1.0)
    runner = asyncio.create_task(deleter.run())
    try:
        deleter.flush()
        first, second = await queue.receive(10, 0, 30)
        waiting = asyncio.create_task(deleter.delete(first))
        for _ in range(5):
            await asyncio.sleep(0)
        assert queue.delete_calls == []
        await asyncio.gather(waiting, deleter.delete(second))
    finally:
        runner.cancel()
    assert queue.delete_calls == [2]
