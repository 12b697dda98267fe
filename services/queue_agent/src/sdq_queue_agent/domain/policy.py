"""The worker's settings and its delivery policy as pure functions (no I/O, no clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sdq_contracts.keys import output_location
from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.domain.model import NewRow
from sdq_queue_agent.errors import DeadlineExceededError, TaskFailure

# SQS refuses a visibility timeout of 12 hours or more.
MAX_VISIBILITY = 43_199
# The deepest prefetch: what one ReceiveMessage can bring.
MAX_PREFETCH = 10


@dataclass(frozen=True)
class WorkerConfig:
    runtime_name: str
    output_bucket: str
    input_buckets: frozenset[str]
    task_timeout: float
    visibility: int
    max_receive_count: int
    max_input_bytes: int = 20 * 1024 * 1024
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    concurrency: int = 1
    prefetch: int = 1
    # Short generations deepen the prefetch until this much generation time is prepared ahead
    # (0: the prefetch count alone), up to MAX_PREFETCH.
    prefetch_seconds: float = 0.0
    # Each generator sends the next request while the runtime still generates, when the
    # runtime queues requests (Runtime.queues_requests): it starts it without a round trip.
    lookahead: bool = True
    wait_time: int = 20
    burst_wait_time: int = 1
    interrupt_grace: float = 15.0
    drain_seconds: float = 60.0
    # After "runtime unavailable", receive nothing until the runtime answers again.
    runtime_poll_seconds: float = 2.0
    # How often a held task's status row is looked at for a cancel request: one status call
    # per held task per period (the lease renew when due, which also answers it, else a read);
    # a task held for less than this makes none.
    cancel_poll_seconds: float = 5.0
    # Longest a settled message waits to be deleted in a batch (capped at visibility / 6).
    delete_delay: float = 5.0
    # A task interrupted at its deadline is retried only when the runtime's config asks for it.
    retry_on_deadline: bool = False
    # Days a status row the agent had to create lives before DynamoDB's TTL deletes it.
    status_ttl_days: int = 30
    # Lifetime of the notification's download links (the config's downloads.link_seconds).
    download_link_seconds: int = 3600
    # Who holds a claimed task (the status row's lease holder); unique per agent process.
    agent_id: str = "agent"

    def backoff(self, receive_count: int) -> int:
        """Visibility for a transient retry: exponential in the receive count, capped."""
        seconds = self.backoff_base * (2 ** max(receive_count - 1, 0))
        return int(min(seconds, self.backoff_max, MAX_VISIBILITY))

    @property
    def delete_max_delay(self) -> float:
        """How long a settled message may wait for its batch delete: far below the heartbeat
        period (visibility / 3), so a waiting message never needs its visibility extended."""
        return max(0.0, min(self.delete_delay, self.visibility / 6))

    @property
    def announce_window(self) -> float:
        """How long after a task settled its settling message may still be publishing or
        waiting for its batch (with the ``announced`` mark): a second SQS copy of that message
        arriving sooner and finding no mark is handed back until this has passed."""
        return 2 * self.delete_max_delay + 5

    def receive_batch(self, depth: int) -> int:
        """Free slots that make a receive worth its call: half the prefetch ``depth`` (at least
        one, never more than the depth)."""
        return max(1, (depth + 1) // 2)

    def prefetch_depth(self, generation_s: float | None) -> int:
        """Tasks to prepare ahead: the prefetch count, or more when generations of
        ``generation_s`` (typical, None: not known yet) need them to cover ``prefetch_seconds``
        of generation across the generators."""
        if not self.prefetch_seconds or not generation_s:
            return self.prefetch
        wanted = math.ceil(self.prefetch_seconds * self.concurrency / generation_s)
        return max(self.prefetch, min(MAX_PREFETCH, wanted))

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds the status row without renewal: the message's visibility
        (the heartbeat renews both together)."""
        return float(self.visibility)


class Verdict(Enum):
    FAIL = "fail"  # permanent: status failed, one notification, message deleted
    FAIL_LAST = "fail_last"  # transient on the last receive: failed, left for the DLQ
    RETRY = "retry"  # transient: back off (visibility), waiting to retry


@dataclass(frozen=True)
class FailureDecision:
    verdict: Verdict
    permanent: bool
    # Seconds the message stays invisible before the retry (RETRY only).
    delay: int = 0

    @property
    def final(self) -> bool:
        return self.verdict is not Verdict.RETRY


def decide(failure: TaskFailure, receive_count: int, config: WorkerConfig) -> FailureDecision:
    """What a failure does to the message: the one place that weighs permanence, the receive
    count and the backoff."""
    permanent = failure.permanent
    if isinstance(failure, DeadlineExceededError) and not config.retry_on_deadline:
        permanent = True
    if permanent:
        return FailureDecision(Verdict.FAIL, permanent=True)
    if receive_count >= config.max_receive_count:
        return FailureDecision(Verdict.FAIL_LAST, permanent=False)
    return FailureDecision(Verdict.RETRY, permanent=False, delay=config.backoff(receive_count))


def new_row(task: TaskMessage, config: WorkerConfig, now: datetime) -> NewRow:
    """The whole row (TTL included) the agent writes if the API's row is missing."""
    return NewRow(
        runtime=task.runtime,
        tasktype=task.tasktype.value,
        output_location=output_location(config.output_bucket, task.prefix, task.id),
        expires_at=int((now + timedelta(days=config.status_ttl_days)).timestamp()),
    )
