"""Values that flow through the pipeline."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import ValidationError

from sdq_contracts.messages import StatusRecord, TaskMessage
from sdq_contracts.requests import TaskType
from sdq_contracts.status import HOLDER, LEASE_UNTIL

# A location inside a JSON body: keys and list indexes from the root.
JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ReceivedMessage:
    """One SQS message as received."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    trace_header: str | None = None

    @property
    def trace_id(self) -> str | None:
        """The X-Ray root id (``Root=1-...``) of the trace header, if any."""
        if not self.trace_header:
            return None
        for part in self.trace_header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "Root" and value:
                return value
        return None


@dataclass(frozen=True)
class InputRef:
    """An input given by URL at ``path`` of the runtime request body."""

    path: JsonPath
    url: str


@dataclass(frozen=True)
class FetchedInput:
    ref: InputRef
    data: bytes
    content_type: str


@dataclass(frozen=True)
class RuntimeRequest:
    """What a runtime will run: the shaped body plus the inputs still to fetch."""

    task_id: str
    tasktype: TaskType
    body: dict[str, Any]
    inputs: tuple[InputRef, ...] = ()
    model: str | None = None


# Opens a runtime's answer for one output and yields its bytes in chunks (a large output
# streams to S3 without being held whole).
ByteSource = Callable[[], AsyncGenerator[bytes, None]]


@dataclass(frozen=True)
class OutputFile:
    """One output: its bytes in memory (``data``) or read from the runtime on demand
    (``source``), exactly one of the two."""

    data: bytes | None
    content_type: str
    ext: str
    source: ByteSource | None = field(default=None, compare=False)
    # Where the runtime keeps it (for logs and errors), e.g. ComfyUI's subfolder/filename.
    name: str = ""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.source is None):
            raise ValueError("an output has either data or a source")


@dataclass(frozen=True)
class RuntimeResult:
    files: tuple[OutputFile, ...]
    # The runtime's full response for the ``.out`` object (images elided, see README).
    response: dict[str, Any] = field(default_factory=dict)
    # Run once the upload ended, stored or failed (best effort, beside the next task): a
    # runtime that keeps its outputs (InvokeAI's image store, ComfyUI's output folder) removes
    # them here; a task that failed after generating runs its generation again.
    after_upload: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    ALREADY_DONE = "already_done"  # completed, cancelled or permanently failed: skip
    CANCEL_REQUESTED = "cancel_requested"
    # Another receive of the same task holds a live lease on the row (a duplicate delivery).
    HELD_ELSEWHERE = "held_elsewhere"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: StatusRecord | None = None
    # The row as the refusal found it (who owes its announcement: sdq_contracts.status).
    row: Mapping[str, Any] | None = field(default=None, compare=False)
    # HELD_ELSEWHERE: epoch seconds until which the other holder's lease runs.
    lease_until: int = 0


@dataclass(frozen=True)
class NewRow:
    """What the agent writes when it must create a status row (a task the API's row does not
    describe yet): every attribute a row needs, its TTL included, so no row is partial."""

    runtime: str
    tasktype: str
    output_location: str
    expires_at: int

    def item(self, task_id: str, stamp: str) -> dict[str, Any]:
        return {
            "id": task_id,
            "runtime": self.runtime,
            "tasktype": self.tasktype,
            "output_location": self.output_location,
            "created_at": stamp,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class ParsedTask:
    task: TaskMessage
    content: dict[str, Any]


def refused_claim(item: dict[str, Any] | None, holder: str, now: int) -> Claim:
    """Why the status row refused a claim, read from the row as it is now."""
    try:
        record = StatusRecord.from_item(item) if item else None
    except ValidationError:  # a row no writer of today leaves; treat it as ended
        record = None
    if item is not None and record is not None:
        other = item.get(HOLDER)
        lease = int(item.get(LEASE_UNTIL, 0))
        if record.status.value == "running" and other not in (None, holder) and lease >= now:
            return Claim(ClaimOutcome.HELD_ELSEWHERE, record, lease_until=lease)
        if record.cancel_requested and not record.status.terminal:
            return Claim(ClaimOutcome.CANCEL_REQUESTED, record)
    return Claim(ClaimOutcome.ALREADY_DONE, record, row=item)


@dataclass(frozen=True)
class Renewal:
    """The heartbeat's renew of a held task's lease: whether the receive still holds the task,
    and whether a cancel was asked meanwhile."""

    held: bool
    cancel_requested: bool = False


@dataclass(frozen=True)
class DeleteRefusal:
    """One entry of a batch delete that SQS refused: its code, and whether asking again can
    help (a server fault) or not (a stale receipt handle: the message is received elsewhere)."""

    code: str
    retryable: bool
