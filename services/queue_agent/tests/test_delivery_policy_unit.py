"""The delivery policy (``domain.policy`` and ``domain.outcomes``) driven directly with an
injected clock: every outcome's effect on the status row, the message and the registry, in
milliseconds and without waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from agent_fakes import (
    FakeMetrics,
    FakePublisher,
    FakeQueue,
    FakeStatus,
    FakeStore,
    FakeWebhooks,
    task_body,
)

from sdq_contracts.messages import TaskMessage, TaskState
from sdq_queue_agent.domain.deletes import BatchDeleter
from sdq_queue_agent.domain.held import Held, HeldRegistry, Phase
from sdq_queue_agent.domain.model import (
    ClaimOutcome,
    OutputFile,
    ParsedTask,
    RuntimeRequest,
    RuntimeResult,
)
from sdq_queue_agent.domain.outcomes import Outcomes
from sdq_queue_agent.domain.policy import Verdict, WorkerConfig, decide, new_row
from sdq_queue_agent.domain.preparation import Job, NotClaimed
from sdq_queue_agent.errors import (
    DeadlineExceededError,
    RuntimeRejectedError,
    RuntimeUnavailableError,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    wall: datetime = T0
    mono: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def config(**overrides: object) -> WorkerConfig:
    base: dict[str, object] = {
        "runtime_name": "sdruntime",
        "output_bucket": "outputs",
        "input_buckets": frozenset({"outputs"}),
        "task_timeout": 300,
        "visibility": 60,
        "max_receive_count": 3,
        "backoff_base": 10,
        "backoff_max": 300,
    }
    return WorkerConfig(**(base | overrides))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pure policy


@pytest.mark.parametrize(
    ("failure", "receive", "retry_on_deadline", "verdict", "delay", "permanent"),
    [
        (RuntimeRejectedError("422"), 1, False, Verdict.FAIL, 0, True),
        (RuntimeUnavailableError("down"), 1, False, Verdict.RETRY, 10, False),
        (RuntimeUnavailableError("down"), 2, False, Verdict.RETRY, 20, False),
        (RuntimeUnavailableError("down"), 3, False, Verdict.FAIL_LAST, 0, False),
        (DeadlineExceededError("300 s"), 1, False, Verdict.FAIL, 0, True),
        (DeadlineExceededError("300 s"), 1, True, Verdict.RETRY, 10, False),
        (DeadlineExceededError("300 s"), 3, True, Verdict.FAIL_LAST, 0, False),
    ],
)
def test_decide(failure, receive, retry_on_deadline, verdict, delay, permanent) -> None:
    decision = decide(failure, receive, config(retry_on_deadline=retry_on_deadline))
    assert (decision.verdict, decision.delay, decision.permanent) == (verdict, delay, permanent)


# --------------------------------------------------------------------------- outcomes


@dataclass
class Rig:
    clock: FakeClock
    cfg: WorkerConfig
    queue: FakeQueue
    status: FakeStatus
    publisher: FakePublisher
    registry: HeldRegistry
    outcomes: Outcomes

    async def held(self, task_id: str = "t1") -> Held:
        self.queue.send(task_body(task_id))
        [message] = await self.queue.receive(1, 0, self.cfg.visibility)
        held = self.registry.hold(message)
        held.task = TaskMessage.model_validate(task_body(task_id))
        return held

    async def claimed(self, task_id: str = "t1") -> Held:
        held = await self.held(task_id)
        assert held.task is not None
        lease = int(self.clock.now().timestamp()) + self.cfg.visibility
        claim = await self.status.claim(
            task_id,
            new_row(held.task, self.cfg, self.clock.now()),
            self.clock.now(),
            held.holder,
            lease,
        )
        assert claim.outcome is ClaimOutcome.CLAIMED
        held.leased = True
        return held


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    cfg = config()
    queue, status, publisher = FakeQueue(), FakeStatus(), FakePublisher()
    metrics = FakeMetrics()
    registry = HeldRegistry(cfg, clock, metrics)
    deletes = BatchDeleter(queue, clock, max_delay=0, status=status)  # no batching delay here

    def spawn(coro):  # background work is not under test here
        coro.close()

    outcomes = Outcomes(
        cfg,
        registry=registry,
        queue=queue,
        store=FakeStore(),
        publisher=publisher,
        status=status,
        webhooks=FakeWebhooks(),
        metrics=metrics,
        clock=clock,
        spawn=spawn,
        deletes=deletes,
    )
    runner = asyncio.create_task(deletes.run())
    yield Rig(clock, cfg, queue, status, publisher, registry, outcomes)
    runner.cancel()


async def test_transient_failure_waits_to_retry_on_the_row_and_the_queue(rig: Rig) -> None:
    held = await rig.claimed()
    await rig.outcomes.fail(held, RuntimeUnavailableError("HTTP 503"))
    row = rig.status.rows["t1"]
    assert (row["status"], row["stage"], row["attempts"]) == ("running", "waiting_to_retry", 1)
    assert row["error"] == {
        "code": "runtime_unavailable",
        "message": "HTTP 503",
        "permanent": False,
    }
    assert row["retry_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert "holder" not in row
    assert rig.queue.visibility_calls == [("m1", 10)]
    assert rig.publisher.published == [] and len(rig.registry) == 0


async def test_deadline_fails_permanently_with_one_notification(rig: Rig) -> None:
    held = await rig.claimed()
    await rig.outcomes.fail(held, DeadlineExceededError("generation exceeded 300 s"))
    assert rig.status.rows["t1"]["status"] == "failed"
    [note] = rig.publisher.published
    assert note.status is TaskState.FAILED and note.error is not None and note.error.permanent
    assert rig.queue.deleted == ["m1"] and rig.status.rows["t1"]["settled_by"] == "m1"


async def test_duplicate_is_handed_back_until_the_holders_lease_runs_out(rig: Rig) -> None:
    first = await rig.claimed()
    assert first.task is not None
    rig.clock.advance(25)  # the first holder has 35 s of lease left
    second = await rig.held()
    claim = await rig.status.claim(
        "t1", new_row(first.task, rig.cfg, rig.clock.now()), rig.clock.now(), second.holder, 0
    )
    assert claim.outcome is ClaimOutcome.HELD_ELSEWHERE
    assert first.task is not None
    await rig.outcomes.not_claimed(second, NotClaimed(first.task, claim))
    assert rig.queue.visibility_calls == [("m2", 36)]
    assert rig.queue.deleted == [] and rig.publisher.published == []
    assert rig.registry.values() == [first]


async def test_release_gives_up_the_lease_at_once(rig: Rig) -> None:
    held = await rig.claimed()
    await rig.outcomes.release(held, "shutting down")
    assert "holder" not in rig.status.rows["t1"]
    assert rig.queue.visibility_calls == [("m1", 0)]


async def test_cancelled_while_queued_is_announced_once_by_the_receiving_agent(rig: Rig) -> None:
    rig.status.seed("t1", status="cancelled", announced=False)
    held = await rig.held()
    assert held.task is not None
    claim = await rig.status.claim(
        "t1", new_row(held.task, rig.cfg, T0), T0, held.holder, int(T0.timestamp()) + 60
    )
    await rig.outcomes.not_claimed(held, NotClaimed(held.task, claim))
    [note] = rig.publisher.published
    assert note.status is TaskState.CANCELLED and rig.queue.deleted == ["m1"]
    # a second copy finds it announced: deleted, nothing published
    again = await rig.held()
    claim = await rig.status.claim(
        "t1", new_row(held.task, rig.cfg, T0), T0, again.holder, int(T0.timestamp()) + 60
    )
    await rig.outcomes.not_claimed(again, NotClaimed(held.task, claim))
    assert len(rig.publisher.published) == 1 and rig.queue.deleted == ["m1", "m2"]


async def test_heartbeat_renews_the_lease_and_a_lost_lease_stops_the_generation(
    rig: Rig,
) -> None:
    held = await rig.claimed()
    held.phase = Phase.GENERATING
    rig.clock.advance(rig.cfg.visibility / 3)
    await rig.registry.beat(rig.queue, rig.status)
    assert rig.status.rows["t1"]["lease_until"] == int(rig.clock.now().timestamp()) + 60
    assert rig.status.rows["t1"]["stage"] == "generating"  # the renew records the stage
    assert rig.queue.extends == 1 and [held.signal] == [None]  # (a list: no type narrowing)
    rig.status.rows["t1"]["holder"] = "someone-else/1"  # taken over after a lapse
    rig.clock.advance(rig.cfg.visibility / 3)
    await rig.registry.beat(rig.queue, rig.status)
    assert held.signal == "release" and held.leased is False


async def test_capacity_comes_from_the_phases_of_held_messages(rig: Rig) -> None:
    assert rig.registry.capacity() == 2  # prefetch 1 + one idle generator
    first = await rig.held("a")
    second = await rig.held("b")
    assert rig.registry.capacity() == 0
    await rig.registry.move(first, Phase.GENERATING)
    assert rig.registry.capacity() == 0  # generator busy, one prefetched
    await rig.registry.move(first, Phase.FINISHING)
    assert rig.registry.capacity() == 1
    await rig.registry.drop(second)
    await rig.registry.drop(first)
    assert rig.registry.capacity() == 2 and len(rig.registry) == 0


# --------------------------------------------------------------------------- who announces


async def _redeliver(rig: Rig, held: Held, *, after: float) -> Held:
    """The same SQS message received again (same MessageId, new receipt handle), ``after``
    seconds (its visibility timeout or backoff)."""
    rig.clock.advance(after)
    rig.queue.messages[held.message.message_id].visible_at = 0
    [message] = await rig.queue.receive(1, 0, rig.cfg.visibility)
    assert message.message_id == held.message.message_id
    again = rig.registry.hold(message)
    again.task = held.task
    return again


async def _copy(rig: Rig, task_id: str = "t1") -> Held:
    """Another copy of the task (an SNS/SQS duplicate: a different MessageId)."""
    return await rig.held(task_id)


async def _claim_refused(rig: Rig, held: Held) -> NotClaimed:
    assert held.task is not None
    now = rig.clock.now()
    claim = await rig.status.claim(
        held.task.id, new_row(held.task, rig.cfg, now), now, held.holder, int(now.timestamp()) + 60
    )
    assert claim.outcome is ClaimOutcome.ALREADY_DONE
    return NotClaimed(held.task, claim)


async def test_crash_between_final_write_and_delete_the_same_message_announces_copies_do_not(
    rig: Rig,
) -> None:
    """The agent wrote `completed` (settled_by m1) and died before publishing and deleting:
    m1 comes back and announces; a duplicate copy (m2), even at the same moment, does not."""
    held = await rig.claimed()
    assert held.task is not None
    assert await rig.status.complete("t1", held.holder, ["s3://o/1.png"], T0, settled_by="m1")
    await rig.registry.drop(held)  # the agent died here
    again = await _redeliver(rig, held, after=rig.cfg.visibility)  # its visibility ran out
    copy = await _copy(rig)
    first, second = await _claim_refused(rig, again), await _claim_refused(rig, copy)
    await asyncio.gather(
        rig.outcomes.not_claimed(again, first), rig.outcomes.not_claimed(copy, second)
    )
    [note] = rig.publisher.published
    assert (note.id, note.status, note.image_url) == ("t1", TaskState.COMPLETED, ["s3://o/1.png"])
    assert sorted(rig.queue.deleted) == ["m1", "m2"] and not rig.queue.messages
    assert rig.status.calls["adopt"] == 0  # owned rows need no write to decide


async def test_a_duplicate_copy_of_a_finished_task_never_announces(rig: Rig) -> None:
    held = await rig.claimed()
    assert held.task is not None
    assert await rig.status.complete("t1", held.holder, ["s3://o/1.png"], T0, settled_by="m1")
    copy = await _copy(rig)
    await rig.outcomes.not_claimed(copy, await _claim_refused(rig, copy))
    assert rig.publisher.published == [] and rig.queue.deleted == ["m2"]


async def test_concurrent_copies_of_a_task_cancelled_while_queued_announce_once(rig: Rig) -> None:
    """The API cancelled the queued task (no owner): three copies arrive at once; one adopts
    the announcement, the others delete silently."""
    rig.status.seed("t1", status="cancelled", announced=False)
    copies = [await _copy(rig) for _ in range(3)]
    refused = [await _claim_refused(rig, c) for c in copies]
    await asyncio.gather(
        *(rig.outcomes.not_claimed(c, r) for c, r in zip(copies, refused, strict=True))
    )
    [note] = rig.publisher.published
    assert note.status is TaskState.CANCELLED
    assert sorted(rig.queue.deleted) == ["m1", "m2", "m3"]
    assert rig.status.rows["t1"]["settled_by"] in {"m1", "m2", "m3"}


async def test_adopted_announcement_lost_is_repeated_by_its_own_message_only(rig: Rig) -> None:
    rig.status.seed("t1", status="cancelled", announced=False)
    first = await _copy(rig)
    rig.publisher.fail_next = 1  # SNS down after the adoption
    await rig.outcomes.not_claimed(first, await _claim_refused(rig, first))
    assert rig.publisher.published == [] and rig.queue.deleted == []
    copy = await _copy(rig)
    await rig.outcomes.not_claimed(copy, await _claim_refused(rig, copy))
    assert rig.publisher.published == []  # m1 owns it now
    again = await _redeliver(rig, first, after=rig.cfg.announce_window)
    await rig.outcomes.not_claimed(again, await _claim_refused(rig, again))
    [note] = rig.publisher.published
    assert note.status is TaskState.CANCELLED and sorted(rig.queue.deleted) == ["m1", "m2"]


async def test_concurrent_cancelled_copies_announce_once(rig: Rig) -> None:
    """Two copies both see the cancel request (claim refused for both): one cancelled row,
    one notification, both messages deleted."""
    rig.status.seed("t1", status="running", cancel_requested=True)
    copies = [await _copy(rig), await _copy(rig)]
    await asyncio.gather(*(rig.outcomes.cancelled(c) for c in copies))
    [note] = rig.publisher.published
    assert note.status is TaskState.CANCELLED
    assert sorted(rig.queue.deleted) == ["m1", "m2"]


async def test_a_final_failure_of_a_second_copy_publishes_nothing(rig: Rig) -> None:
    """Two copies fail permanently before any claim (e.g. refused input): one notification."""
    copies = [await _copy(rig), await _copy(rig)]
    await asyncio.gather(
        *(rig.outcomes.fail(c, RuntimeRejectedError("bad request")) for c in copies)
    )
    [note] = rig.publisher.published
    assert note.status is TaskState.FAILED
    assert sorted(rig.queue.deleted) == ["m1", "m2"]


async def test_publish_failure_after_completion_hands_the_message_back(rig: Rig) -> None:
    """SNS down after the completed write: not a task failure (no failed notification, no
    retry of the generation); the message comes back after the backoff and announces."""
    held = await rig.claimed()
    assert held.task is not None
    rig.publisher.fail_next = 1
    job = Job(held, ParsedTask(held.task, {}), RuntimeRequest("t1", held.task.tasktype, {}), {})
    result = RuntimeResult(files=(OutputFile(b"png", "image/png", "png"),), response={})
    await rig.outcomes.complete(job, result)
    assert rig.publisher.published == [] and rig.queue.deleted == []
    # not the backoff (10 s) but the window a copy of it would wait for a mark (2 x 5 s + 5 s)
    assert rig.queue.visibility_calls == [("m1", 15)]
    assert rig.status.rows["t1"]["status"] == "completed"
    again = await _redeliver(rig, held, after=15)
    await rig.outcomes.not_claimed(again, await _claim_refused(rig, again))
    [note] = rig.publisher.published
    assert note.status is TaskState.COMPLETED and rig.queue.deleted == ["m1"]


# --------------------------------------------------------------------------- heartbeat


async def test_a_task_shorter_than_the_heartbeat_period_makes_no_status_call(rig: Rig) -> None:
    held = await rig.claimed()
    held.phase = Phase.GENERATING
    rig.clock.advance(rig.cfg.cancel_poll_seconds - 0.1)
    await rig.registry.beat(rig.queue, rig.status)
    assert rig.status.calls == {"claim": 1} and rig.queue.extends == 0


async def test_one_status_call_per_held_task_per_heartbeat(rig: Rig) -> None:
    """visibility 60 (renew every 20 s), cancel poll every 5 s: over 60 s a generating task
    makes 12 status calls, never two in one period: its first poll is a renew (the row shows
    "generating" 5 s into the generation, not at the first lease renew 20 s after the receive),
    then 3 lease renews that also answer the cancel question, and 8 reads; each renew records
    the stage."""
    held = await rig.claimed()
    held.phase = Phase.GENERATING
    for _ in range(12):
        before = sum(rig.status.calls.values())
        rig.clock.advance(rig.cfg.cancel_poll_seconds)
        await rig.registry.beat(rig.queue, rig.status)
        assert sum(rig.status.calls.values()) - before == 1
    assert rig.status.calls == {"claim": 1, "renew": 4, "cancel_requested": 8}
    assert rig.status.stages["t1"] == ["generating"] * 4


async def test_a_cancel_request_is_seen_by_the_renew(rig: Rig) -> None:
    held = await rig.claimed()
    held.phase = Phase.GENERATING
    rig.status.rows["t1"]["cancel_requested"] = True
    held.next_cancel_check = float("inf")  # only the renew can see it
    rig.clock.advance(rig.cfg.visibility / 3)
    await rig.registry.beat(rig.queue, rig.status)
    assert held.signal == "cancel" and rig.status.calls["cancel_requested"] == 0


async def test_a_prefetched_task_is_not_polled_its_renew_carries_the_cancel(rig: Rig) -> None:
    """Waiting in the prefetch (15 s with a 5 s poll period): no poll; the lease renew at a
    third of the visibility is its one status call and sees the cancel request."""
    held = await rig.claimed()
    held.phase = Phase.READY
    for _ in range(3):
        rig.clock.advance(rig.cfg.cancel_poll_seconds)
        await rig.registry.beat(rig.queue, rig.status)
    assert rig.status.calls == {"claim": 1}
    rig.status.rows["t1"]["cancel_requested"] = True
    rig.clock.advance(rig.cfg.cancel_poll_seconds)
    await rig.registry.beat(rig.queue, rig.status)
    assert rig.status.calls == {"claim": 1, "renew": 1}
    assert rig.status.stages["t1"] == ["prefetched"] and held.signal == "cancel"


async def test_cancel_polls_count_from_the_start_of_the_generation(rig: Rig) -> None:
    held = await rig.claimed()
    rig.clock.advance(10)  # prefetched for 10 s
    rig.registry.generating(held)
    rig.clock.advance(rig.cfg.cancel_poll_seconds - 0.1)
    await rig.registry.beat(rig.queue, rig.status)
    assert rig.status.calls == {"claim": 1}  # a generation shorter than a period: no poll
    rig.clock.advance(0.1)
    await rig.registry.beat(rig.queue, rig.status)
    # The first poll of the generation shows the stage (a renew answers the cancel question).
    assert rig.status.calls == {"claim": 1, "renew": 1}
    assert rig.status.stages["t1"] == ["generating"]
