"""Values that flow through the pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sdq_contracts.messages import StatusRecord, TaskMessage
from sdq_contracts.requests import TaskType

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


@dataclass(frozen=True)
class OutputFile:
    data: bytes
    content_type: str
    ext: str


@dataclass(frozen=True)
class RuntimeResult:
    files: tuple[OutputFile, ...]
    # The runtime's full response for the ``.out`` object (images elided, see README).
    response: dict[str, Any] = field(default_factory=dict)
    # Run once the files are in S3 (best effort, beside the next task): a runtime that keeps
    # its outputs (InvokeAI's image store) removes them here.
    after_upload: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    ALREADY_DONE = "already_done"  # completed, cancelled or permanently failed: skip
    CANCEL_REQUESTED = "cancel_requested"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: StatusRecord | None = None
    # The row reached its final state but its notification was not confirmed published.
    unannounced: bool = False


@dataclass(frozen=True)
class ParsedTask:
    task: TaskMessage
    content: dict[str, Any]
