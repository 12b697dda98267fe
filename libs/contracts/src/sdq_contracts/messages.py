"""What travels between services: the task message (input topic → runtime queue), the result
notification (output topic and webhook body), and the task status record (DynamoDB)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sdq_contracts.config import NAME_PATTERN
from sdq_contracts.keys import task_suffix
from sdq_contracts.requests import OutputOptions, TaskType

MESSAGE_VERSION: Literal[1] = 1

# SNS/SQS message attribute names.
ATTR_RUNTIME = "runtime"
ATTR_TASKTYPE = "tasktype"
ATTR_MODEL = "sd_model_checkpoint"
ATTR_STATUS = "status"
# Fallback carrier of the X-Ray trace header where the AWSTraceHeader system attribute is
# absent (SNS→SQS in emulators does not set it).
ATTR_TRACE_HEADER = "X-Amzn-Trace-Id"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiVersion(StrEnum):
    V1ALPHA1 = "v1alpha1"
    V1ALPHA2 = "v1alpha2"


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


class TaskError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    # True when retrying the same task cannot succeed (bad request, invalid workflow, ...).
    permanent: bool = True


class OutputKind(StrEnum):
    IMAGE = "image"
    ANIMATION = "animation"  # animated WebP/PNG/GIF
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"  # text or JSON a workflow outputs
    MODEL_3D = "3d"  # a mesh (glTF binary and the like)
    OTHER = "other"  # any other file a workflow saves (latents, ...), kept as made


class OutputObject(BaseModel):
    """One stored output of a task, in the order of ``image_url``/``outputs``."""

    model_config = ConfigDict(frozen=True)

    url: str  # s3://bucket/key
    kind: OutputKind
    content_type: str
    bytes: int
    # Pixels, for images, animations and video (when known).
    width: int | None = None
    height: int | None = None
    # A short-lived pre-signed HTTPS GET link: set only on what is handed to a client (the
    # notification, the status answer); never stored in the status row, never logged.
    download_url: str | None = None
    download_expires_at: datetime | None = None


class TaskMessage(BaseModel):
    """The internal task put on the input topic; the queue agent's unit of work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = MESSAGE_VERSION
    id: Annotated[str, Field(pattern=NAME_PATTERN)]
    runtime: Annotated[str, Field(pattern=NAME_PATTERN)]
    tasktype: TaskType
    api_version: ApiVersion = ApiVersion.V1ALPHA2
    prefix: str = ""
    context: Any = None
    callback_url: str | None = None
    # Model requested by a v1alpha1 body (or a dynamic-model v1alpha2 task's content).
    sd_model_checkpoint: str | None = None
    # Exactly one of content (inline) or content_ref (claim check: s3://bucket/key) is set.
    content: dict[str, Any] | None = None
    content_ref: str | None = None
    submitted_at: datetime = Field(default_factory=utcnow)
    # How still images are stored (format, quality); None keeps the runtime's PNG.
    output: OutputOptions | None = None

    @model_validator(mode="after")
    def _content_xor_ref(self) -> Self:
        if (self.content is None) == (self.content_ref is None):
            raise ValueError("exactly one of 'content' and 'content_ref' must be set")
        if self.content_ref is not None and not self.content_ref.startswith("s3://"):
            raise ValueError("content_ref must be an s3:// URI")
        return self


class ResultNotification(BaseModel):
    """Published on the output topic (attributes runtime, status) and POSTed to callback_url."""

    model_config = ConfigDict(frozen=True)

    id: str
    runtime: str
    result: bool
    status: TaskState
    # The s3:// URI of every output, whatever its kind (the seed's name, kept for its clients).
    image_url: list[str] = Field(default_factory=list)
    # The same outputs with their kind, content type, size, dimensions and download link.
    files: list[OutputObject] = Field(default_factory=list)
    # The task's ``.out`` object (the runtime's full answer, images elided), as the seed guide
    # says; it exists once the task completed. Derived from ``output_location`` when not given.
    output_url: str = ""
    # The folder of the task's outputs: ``s3://{bucket}/{prefix}/{id}``.
    output_location: str | None = None
    context: Any = None
    error: TaskError | None = None
    # Seconds per stage, e.g. {"queue": .., "fetch": .., "generate": .., "upload": ..}.
    timings: dict[str, float] | None = None
    trace_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _out_object_from_folder(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("output_url") is None
            and isinstance(data.get("output_location"), str)
            and isinstance(data.get("id"), str)
        ):
            folder, task_id = data["output_location"].rstrip("/"), data["id"]
            data = {**data, "output_url": f"{folder}/{task_id}-{task_suffix(task_id)}.out"}
        return data

    @model_validator(mode="after")
    def _has_output_url(self) -> Self:
        if not self.output_url:
            raise ValueError("output_url (or output_location to derive it from) is required")
        return self


class StatusRecord(BaseModel):
    """One row of the task-status table, keyed by ``id``."""

    model_config = ConfigDict(frozen=True)

    id: str
    runtime: str
    tasktype: TaskType
    status: TaskState
    output_location: str
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The s3:// URI of every output, and the same outputs with their metadata (no links here:
    # the status answer signs fresh ones).
    outputs: list[str] = Field(default_factory=list)
    files: list[OutputObject] = Field(default_factory=list)
    error: TaskError | None = None
    # sha256 of the canonical request body: the same id with another body is a conflict.
    request_hash: str | None = None
    # The accepted response, replayed for an identical retry of the same request.
    response: dict[str, Any] | None = None
    # Set once the task is on the input topic; a replay of an unpublished row publishes again.
    published_at: datetime | None = None
    cancel_requested: bool = False
    # While running: what the agent is doing ("generating", "uploading"); progress displays use it.
    stage: str | None = None
    # While waiting out a retry backoff (stage "waiting_to_retry"): when the next attempt runs.
    retry_at: datetime | None = None
    trace_id: str | None = None
    # Epoch seconds after which DynamoDB's TTL deletes the row.
    expires_at: int | None = None

    def to_item(self) -> dict[str, Any]:
        """A plain mapping for DynamoDB (no floats, no None values)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return _no_floats(data)  # type: ignore[no-any-return]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StatusRecord:
        return cls.model_validate(_from_decimals(item))


def _no_floats(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _no_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_floats(v) for v in value]
    return value


def _from_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_decimals(v) for v in value]
    return value
