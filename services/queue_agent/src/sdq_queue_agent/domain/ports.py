"""The agent's outside world as protocols; adapters implement them, tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any, Protocol

from sdq_contracts.messages import OutputObject, ResultNotification, TaskError, TaskMessage
from sdq_queue_agent.domain.model import (
    Claim,
    DeleteRefusal,
    FetchedInput,
    InputRef,
    NewRow,
    ReceivedMessage,
    Renewal,
    RuntimeRequest,
    RuntimeResult,
)

# DynamoDB's limit of items per TransactWriteItems.
MAX_MARKS = 100


class TaskQueue(Protocol):
    async def receive(
        self, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]: ...

    async def delete(self, message: ReceivedMessage) -> None: ...

    async def delete_batch(self, messages: Sequence[ReceivedMessage]) -> dict[str, DeleteRefusal]:
        """Delete up to ten messages in one call; the refused ones by receipt handle (empty
        when every one is deleted)."""
        ...

    async def set_visibility(self, message: ReceivedMessage, seconds: int) -> None: ...

    async def extend(self, messages: Sequence[ReceivedMessage], seconds: int) -> None:
        """Heartbeat: push the visibility of every message ``seconds`` into the future."""
        ...

    async def is_empty(self) -> bool:
        """No message visible, in flight or delayed (burst mode's stop condition)."""
        ...


class ObjectStore(Protocol):
    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    async def put_stream(
        self, bucket: str, key: str, chunks: AsyncGenerator[bytes, None], content_type: str
    ) -> int:
        """Store what ``chunks`` yields without holding it whole: one PutObject when it fits in
        one part, else a multipart upload (aborted on any failure). Returns the byte count."""
        ...

    async def get(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        """Bytes and content type; raises InputTooLargeError above ``max_bytes``."""
        ...


class LinkSigner(Protocol):
    async def sign(self, bucket: str, key: str, seconds: int) -> str:
        """A pre-signed HTTPS GET URL of the object, valid ``seconds`` (at most: it also dies
        with the signing credentials). Local computation, no call to AWS; raises AwsError when
        it cannot sign (no credentials)."""
        ...


class ResultPublisher(Protocol):
    async def publish(self, notification: ResultNotification) -> None: ...


class StatusStore(Protocol):
    """The status row, moved only as :mod:`sdq_contracts.status` allows."""

    async def claim(
        self, task_id: str, new_row: NewRow, now: datetime, holder: str, lease_until: int
    ) -> Claim:
        """Mark the task running (attempts + 1) under ``holder``'s lease unless it ended, a
        cancel was asked, or another receive holds a live lease."""
        ...

    async def renew(
        self, task_id: str, holder: str, lease_until: int, stage: str, now: datetime
    ) -> Renewal:
        """The heartbeat's one status write: extend the holder's lease and record the task's
        stage; says whether ``holder`` still holds the row and whether a cancel was asked."""
        ...

    async def release(self, task_id: str, holder: str, now: datetime) -> None:
        """Give up the lease at once (the message is handed back)."""
        ...

    async def wait_to_retry(
        self, task_id: str, holder: str, error: TaskError, retry_at: datetime, now: datetime
    ) -> None:
        """Give up the lease and show the task waiting out its backoff with the last error."""
        ...

    async def cancel_requested(self, task_id: str) -> bool:
        """A cancel poll between two renews (a read)."""
        ...

    # The final writes record ``settled_by``: the MessageId of the message whose handling
    # wrote them. True when written: that message then owes the one notification.

    async def complete(
        self,
        task_id: str,
        holder: str,
        outputs: list[str],
        now: datetime,
        *,
        settled_by: str,
        files: Sequence[OutputObject] = (),
    ) -> bool:
        """Mark completed with the output URIs and their metadata (``files``, same order, no
        links); False when the row was cancelled or taken over meanwhile (nothing to
        announce)."""
        ...

    async def fail(
        self,
        task_id: str,
        error: TaskError,
        now: datetime,
        new_row: NewRow | None,
        settled_by: str,
    ) -> bool:
        """A final failure; without ``new_row`` only an existing row is updated. False when the
        task ended otherwise or another message's handling failed it."""
        ...

    async def cancelled(self, task_id: str, now: datetime, settled_by: str) -> bool:
        """False when the task completed or another message's handling cancelled it."""
        ...

    async def adopt(self, task_id: str, settled_by: str, now: datetime | None = None) -> bool:
        """Take over the announcement of a row ended without an owner (the API's cancel of a
        queued task); True for the one copy that wins. ``now`` is recorded as the row's
        ``updated_at`` (the start of the window of ``sdq_contracts.status.announcement``)."""
        ...

    async def mark_announced(self, marks: Sequence[tuple[str, str]]) -> set[str]:
        """Mark rows ``announced`` after their settling message published: ``marks`` are
        ``(task id, MessageId)`` pairs, one write for all of them (at most
        :data:`MAX_MARKS`, distinct task ids), each conditioned on the row being settled by
        that message. Returns the task ids marked; the others were not (condition failed)."""
        ...


class InputFetcher(Protocol):
    async def fetch_url(self, url: str) -> tuple[bytes, str]:
        """Download an http(s) input under the SSRF, size, time and content-type rules."""
        ...


class WebhookSender(Protocol):
    async def deliver(self, url: str, body: bytes, task_id: str) -> bool:
        """POST the signed body with bounded retries; True when the receiver accepted it."""
        ...


class Runtime(Protocol):
    """One generation backend (SD WebUI, ComfyUI), chosen once from config."""

    kind: str
    # Requests sent while one generates wait and then run one at a time in the order they
    # came (the agent may then send the next task's request ahead: runtime look-ahead).
    queues_requests: bool

    async def ping(self) -> None:
        """Raise when the runtime does not answer its cheap health route."""
        ...

    async def startup_check(self) -> None:
        """Checks before the first task (static model present and loaded); StartupError if not."""
        ...

    def prepare(self, task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
        """Shape the body for the runtime and list the inputs to fetch (pure)."""
        ...

    async def stage_inputs(
        self, request: RuntimeRequest, inputs: Sequence[FetchedInput]
    ) -> RuntimeRequest:
        """Put fetched inputs where the runtime reads them (inline base64, uploads)."""
        ...

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        """One generation; never retried; raises classified TaskFailures."""
        ...

    async def interrupt(self, task_id: str) -> None:
        """Stop the generation of ``task_id`` (remembered, so its answer is not mistaken)."""
        ...


class GaugeValue(Protocol):
    def set(self, value: float) -> None: ...


class Observations(Protocol):
    def observe(self, amount: float) -> None: ...


class Metrics(Protocol):
    """What the worker counts and times; the Prometheus adapter serves it on /metrics."""

    @property
    def in_flight(self) -> GaugeValue:
        """Messages held by the agent."""
        ...

    @property
    def receive_seconds(self) -> Observations:
        """Latency of one receive call (long polls included)."""
        ...

    @property
    def queue_wait_seconds(self) -> Observations:
        """Submit-to-receive time of tasks."""
        ...

    def outcome(self, outcome: str) -> None:
        """One finished task by outcome (completed, failed, retried, cancelled, ...)."""
        ...

    def stage(self, stage: str, seconds: float) -> None:
        """Duration of one task stage (prepare, fetch, generate, upload, notify)."""
        ...

    def busy(self, seconds: float) -> None:
        """Seconds the runtime spent generating (the GPU duty cycle's numerator)."""
        ...


__all__ = [
    "GaugeValue",
    "InputFetcher",
    "InputRef",
    "LinkSigner",
    "Metrics",
    "ObjectStore",
    "Observations",
    "ResultPublisher",
    "Runtime",
    "StatusStore",
    "TaskQueue",
    "WebhookSender",
]
