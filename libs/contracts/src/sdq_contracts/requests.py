"""Client-facing request and response bodies of the sdq HTTP API (v1alpha2 and legacy v1alpha1)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from sdq_contracts.config import NAME_PATTERN, RuntimeType


class TaskType(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    EXTRA_SINGLE_IMAGE = "extra-single-image"
    EXTRA_BATCH_IMAGES = "extra-batch-images"
    PIPELINE = "pipeline"
    # An InvokeAI batch (``{"graph", "runs", "data"?}``) for clients that build their own graph;
    # named apart from ``pipeline`` (a ComfyUI workflow) so the two are never confused.
    INVOKEAI_GRAPH = "invokeai-graph"


TASK_TYPES_BY_RUNTIME: dict[RuntimeType, frozenset[TaskType]] = {
    RuntimeType.SDWEBUI: frozenset(
        {
            TaskType.TEXT_TO_IMAGE,
            TaskType.IMAGE_TO_IMAGE,
            TaskType.EXTRA_SINGLE_IMAGE,
            TaskType.EXTRA_BATCH_IMAGES,
        }
    ),
    RuntimeType.COMFYUI: frozenset({TaskType.PIPELINE}),
    # SD WebUI-style text/image-to-image content is translated to an InvokeAI graph by the agent.
    RuntimeType.INVOKEAI: frozenset(
        {TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE, TaskType.INVOKEAI_GRAPH}
    ),
}

_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()=+,@ -]{1,255}$")
MAX_PREFIX_LENGTH = 512


def check_prefix(value: str) -> str:
    """A safe relative S3 key prefix: '/'-separated segments, no '..', no leading '/', printable.

    The empty string means "no prefix". Returns the prefix without a trailing '/'.
    """
    if value == "":
        return value
    if len(value) > MAX_PREFIX_LENGTH:
        raise ValueError(f"prefix is longer than {MAX_PREFIX_LENGTH} characters")
    if value.startswith("/"):
        raise ValueError("prefix must be relative (no leading '/')")
    trimmed = value[:-1] if value.endswith("/") else value
    for segment in trimmed.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError("prefix must not contain empty, '.' or '..' segments")
        if segment != segment.strip():
            raise ValueError("prefix segments must not start or end with spaces")
        if not _SEGMENT.match(segment):
            raise ValueError(
                "prefix segments may use letters, digits, spaces and !_.*'()=+,@- only"
            )
    return trimmed


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"


class OutputOptions(_Strict):
    """How the agent stores a task's still images (``task.metadata.output``): converted after
    generation, off the GPU's critical path. Animations, video, audio and text are kept as the
    runtime made them."""

    format: ImageFormat = ImageFormat.PNG
    # Encoder quality for JPEG and WebP (1-100); PNG is lossless and takes none.
    quality: Annotated[int, Field(ge=1, le=100)] | None = None

    @model_validator(mode="after")
    def _quality_needs_lossy(self) -> Self:
        if self.quality is not None and self.format is ImageFormat.PNG:
            raise ValueError("quality applies to 'jpeg' and 'webp' only; PNG is lossless")
        return self


class TaskMetadata(_Strict):
    id: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    runtime: Annotated[str, Field(pattern=NAME_PATTERN)]
    tasktype: TaskType
    prefix: str = ""
    # Opaque to sdq; echoed in the notification. Any JSON value.
    context: Any = None
    callback_url: AnyHttpUrl | None = None
    output: OutputOptions | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)


class TaskBody(_Strict):
    metadata: TaskMetadata
    content: dict[str, Any]


class V1Alpha2Request(_Strict):
    task: TaskBody


class V1Alpha1Scripts(BaseModel):
    """`alwayson_scripts` routing keys of the legacy body; other scripts pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    task: TaskType
    id_task: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    sd_model_checkpoint: Annotated[str, Field(min_length=1, max_length=256)]
    image_link: str | None = None
    save_dir: str = "outputs"

    @field_validator("save_dir")
    @classmethod
    def _save_dir(cls, value: str) -> str:
        return check_prefix(value)


# Keys of `alwayson_scripts` that route a v1alpha1 task; the agent strips them before the
# body reaches SD WebUI.
V1ALPHA1_ROUTING_KEYS = frozenset(
    {"task", "id_task", "uid", "sd_model_checkpoint", "image_link", "save_dir"}
)


class V1Alpha1Request(BaseModel):
    """Legacy SD WebUI body; everything but `alwayson_scripts` is passed to the runtime."""

    model_config = ConfigDict(extra="allow", frozen=True)

    alwayson_scripts: V1Alpha1Scripts


class TaskAccepted(BaseModel):
    """202 answer of POST /v1alpha2."""

    id_task: str
    runtime: str
    output_location: str
    status_url: str


class TaskAcceptedV1Alpha1(BaseModel):
    """202 answer of POST /v1alpha1."""

    id_task: str
    sd_model_checkpoint: str
    output_location: str
    status_url: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of the API: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail
