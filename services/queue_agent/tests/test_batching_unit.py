"""Issue 18: fewer calls without losing a message. Batch deletes (size, bounded delay, stop,
per-entry refusals) and receives that bring several messages, on the in-memory fakes and
virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from agent_fakes import FakeQueue, LoopClock, make_harness, task_body, virtual_time

from sdq_queue_agent.domain.deletes import BatchDeleter
from sdq_queue_agent.domain.model import DeleteRefusal, ReceivedMessage, RuntimeRequest
from sdq_queue_agent.domain.policy import WorkerConfig
from sdq_queue_agent.errors import AwsError, RuntimeRejectedError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
async def _virtual_time() -> AsyncIterator[None]:
    with virtual_time():
        yield


async def _received(queue: FakeQueue, n: int) -> list[ReceivedMessage]:
    for i in range(n):
        queue.send(task_body(f"t{i}"))
    return await queue.receive(n, 0, 30)


async def _deleter(queue: FakeQueue, delay: float) -> tuple[BatchDeleter, asyncio.Task[None]]:
    deletes = BatchDeleter(queue, LoopClock(), max_delay=delay)
    return deletes, asyncio.create_task(deletes.run())


def _now() -> float:
    return asyncio.get_running_loop().time()


async def test_deletes_go_ten_at_a_time_and_the_rest_within_the_delay() -> None:
    queue = FakeQueue()
    messages = [m for _ in range(3) for m in await _received(queue, 10)][:23]
    deletes, runner = await _deleter(queue, delay=1.5)
    started = _now()
    await asyncio.gather(*(deletes.delete(m) for m in messages))
    assert queue.delete_calls == [10, 10, 3]
    assert 1.5 <= _now() - started < 1.6  # the last three waited the delay, no longer
    assert sorted(queue.deleted) == sorted(m.message_id for m in messages)
    runner.cancel()


async def test_a_lone_delete_waits_the_delay_unless_flushed_or_stopping() -> None:
    queue = FakeQueue()
    first, second, third = await _received(queue, 3)
    deletes, runner = await _deleter(queue, delay=2.0)
    started = _now()
    await deletes.delete(first)
    assert 2.0 <= _now() - started < 2.1
    started = _now()
    waiting = asyncio.create_task(deletes.delete(second))
    await asyncio.sleep(0.5)
    deletes.flush()  # the queue ran dry
    await waiting
    assert _now() - started < 0.6
    deletes.stop_waiting()
    started = _now()
    await deletes.delete(third)
    assert _now() - started < 0.01 and queue.delete_calls == [1, 1, 1]
    runner.cancel()


async def test_refused_entries_are_retried_when_sqs_says_so_and_reported_otherwise() -> None:
    queue = FakeQueue()
    flaky, stale, broken, fine = await _received(queue, 4)
    queue.delete_refusals = {
        flaky.message_id: [DeleteRefusal("InternalError", retryable=True)],
        stale.message_id: [DeleteRefusal("ReceiptHandleIsInvalid", retryable=False)],
        broken.message_id: [DeleteRefusal("InternalError", retryable=True)] * 3,
    }
    deletes, runner = await _deleter(queue, delay=0.1)
    results = await asyncio.gather(
        *(deletes.delete(m) for m in (flaky, stale, broken, fine)), return_exceptions=True
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], AwsError) and "ReceiptHandleIsInvalid" in str(results[1])
    assert isinstance(results[2], AwsError)  # three refusals: given up, it will reappear
    assert sorted(queue.deleted) == sorted([flaky.message_id, fine.message_id])
    assert queue.delete_calls == [4, 2, 1]  # the retries go in the next batch, at once
    runner.cancel()


async def test_a_failed_batch_call_reports_every_entry() -> None:
    queue = FakeQueue()
    messages = await _received(queue, 2)

    async def down(_: object) -> dict[str, DeleteRefusal]:
        raise AwsError("DeleteMessageBatch failed: ServiceUnavailable")

    queue.delete_batch = down  # type: ignore[method-assign,assignment]
    deletes, runner = await _deleter(queue, delay=0.1)
    results = await asyncio.gather(*(deletes.delete(m) for m in messages), return_exceptions=True)
    assert all(isinstance(r, AwsError) for r in results)
    runner.cancel()


def test_the_delete_delay_stays_far_below_the_heartbeat_period() -> None:
    def cfg(**kw: object) -> WorkerConfig:
        base: dict[str, object] = {
            "runtime_name": "r",
            "output_bucket": "b",
            "input_buckets": frozenset(),
            "task_timeout": 10,
            "visibility": 60,
            "max_receive_count": 3,
        }
        return WorkerConfig(**(base | kw))  # type: ignore[arg-type]

    assert cfg().delete_max_delay == 5.0  # a batch of ten fills at 0.5 s per image
    assert cfg().announce_window == 15.0  # 2 x the batch delay + 5 s
    assert cfg(visibility=6, delete_delay=5.0).delete_max_delay == 1.0
    assert [cfg().receive_batch(p) for p in (0, 1, 2, 3, 4, 10)] == [1, 1, 1, 2, 2, 5]
    # The prefetch depth covers prefetch_seconds of generation, between the count and ten.
    timed = cfg(prefetch=4, prefetch_seconds=1.0)
    assert [timed.prefetch_depth(g) for g in (None, 2.0, 0.5, 0.25, 0.2, 0.1, 0.01)] == [
        4, 4, 4, 4, 5, 10, 10,
    ]  # fmt: skip
    assert cfg(prefetch=4, prefetch_seconds=1.0, concurrency=2).prefetch_depth(0.25) == 8
    assert cfg(prefetch=4).prefetch_depth(0.1) == 4  # off by default in the domain


@pytest.mark.parametrize(("prefetch_seconds", "deepest"), [(1.0, 9), (0.0, 3)])
async def test_short_generations_deepen_the_prefetch(prefetch_seconds: float, deepest: int) -> None:
    """At 0.1 s per image a prefetch of 2 is 0.2 s of work; with prefetch_seconds=1 the agent
    prepares ten ahead once it has seen how long a generation takes: its second receive asks
    for nine (one of the first three is still prepared), later ones for five (half the depth).
    Without it, 3 is the first receive of a prefetch of 2 (two ahead plus the idle
    generator)."""
    h = make_harness(prefetch=2, prefetch_seconds=prefetch_seconds)
    h.runtime.generation_s = 0.1
    for n in range(40):
        h.queue.send(task_body(f"t{n}"))
    await h.burst(timeout=60)
    assert max(h.queue.receives) == deepest
    if prefetch_seconds:
        assert set(h.queue.receives[2:-1]) == {5}
    assert len(h.publisher.published) == 40 and not h.queue.messages


# --------------------------------------------------------------------------- the worker


async def test_backlog_receives_several_per_call_and_deletes_in_batches() -> None:
    h = make_harness(prefetch=4, delete_delay=2.0)
    h.runtime.generation_s = 0.1
    for i in range(20):
        h.queue.send(task_body(f"t{i:02d}"))
    await h.burst(timeout=60)
    assert len(h.publisher.published) == 20 and len(h.queue.deleted) == 20
    assert h.queue.receives[0] == 5  # prefetch 4 + the idle generator
    # never one message per call while the backlog lasts (the last brings what is left)
    assert all(n >= 2 for n in h.queue.receives[:-1])
    assert len(h.queue.receives) <= 1 + (20 - 5 + 1) // 2
    # ten at a time under the backlog; once the queue is dry each delete goes at once
    assert h.queue.delete_calls[0] == 10
    assert sum(h.queue.delete_calls) == 20 and len(h.queue.delete_calls) <= 6
    # the runtime never waited for a receive: task k+1 prepared before task k finished
    events = h.runtime.events
    for i in range(19):
        assert events.index(("prepare", f"t{i + 1:02d}")) < events.index(("done", f"t{i:02d}"))


async def test_messages_waiting_for_their_delete_are_never_redelivered() -> None:
    """A short visibility (2 s) and the longest delete delay allowed: every message is
    received once, deleted once."""
    h = make_harness(prefetch=4, visibility=2, delete_delay=10.0)
    h.runtime.generation_s = 0.3
    for i in range(12):
        h.queue.send(task_body(f"t{i:02d}"))
    await h.burst(timeout=60)
    assert sorted(n.id for n in h.publisher.published) == [f"t{i:02d}" for i in range(12)]
    assert sorted(h.queue.deleted) == sorted(set(h.queue.deleted)) and len(h.queue.deleted) == 12
    assert h.status.claims == [(f"t{i:02d}", "claimed") for i in range(12)]  # no second receive


async def test_stop_flushes_pending_deletes_at_once() -> None:
    h = make_harness(prefetch=4, delete_delay=5.0, wait_time=1)
    for i in range(3):
        h.queue.send(task_body(f"t{i}"))
    worker = h.worker()
    run = asyncio.create_task(worker.run())
    while len(h.publisher.published) < 3:
        await asyncio.sleep(0.01)
    worker.stop()
    stopped = _now()
    await run
    assert sorted(h.queue.deleted) == ["m1", "m2", "m3"]
    assert _now() - stopped < 1.5  # not the 5 s batching delay


async def test_a_lone_task_is_deleted_at_once_when_nothing_else_is_in_flight() -> None:
    """No backlog (the receive long-polls an empty queue): nothing will fill a batch, so the
    settled message is not kept waiting for one."""
    h = make_harness(prefetch=4, delete_delay=5.0, wait_time=20)
    h.queue.send(task_body("t1"))
    worker = h.worker()
    run = asyncio.create_task(worker.run())
    while not h.publisher.published:
        await asyncio.sleep(0.01)
    published = _now()
    while not h.queue.deleted:
        await asyncio.sleep(0.01)
    assert _now() - published < 0.1 and h.queue.delete_calls == [1]
    worker.stop()
    await run


async def test_failed_tasks_do_not_hold_the_runtime_while_their_deletes_wait() -> None:
    """A permanent failure's delete waits for its batch beside the next generation: a backlog
    of rejected tasks runs back to back and their deletes go out together."""
    h = make_harness(prefetch=4, delete_delay=5.0, visibility=60)

    async def reject(_: RuntimeRequest) -> None:
        raise RuntimeRejectedError("HTTP 422: bad sampler")

    ids = [f"t{n}" for n in range(10)]
    for task_id in ids:
        h.runtime.behaviours[task_id] = reject
        h.queue.send(task_body(task_id))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await h.burst(timeout=120)
    assert sorted(n.id for n in h.publisher.published) == ids
    assert sorted(h.queue.deleted) == sorted(f"m{n}" for n in range(1, 11))
    assert loop.time() - started < 5.0  # never one batch delay per task
    assert len(h.queue.delete_calls) < len(ids)
