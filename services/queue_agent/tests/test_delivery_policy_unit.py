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
from sdq_queue_agent.domain.model import ClaimOutcome
from sdq_queue_agent.domain.outcomes import Outcomes
from sdq_queue_agent.domain.policy import Verdict, WorkerConfig, decide, new_row
from sdq_queue_agent.domain.preparation import NotClaimed
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
    deletes = BatchDeleter(queue, clock, max_delay=0)  # no batching delay under test here

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
