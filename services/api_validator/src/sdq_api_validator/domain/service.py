"""Submit, read and cancel tasks: idempotency, claim check and the status row come first."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from sdq_api_validator.domain.ports import ClaimStore, LinkSigner, Publisher, StatusStore
from sdq_api_validator.domain.tracing import tracer, xray_trace_id
from sdq_api_validator.domain.validation import (
    parse_json_object,
    validate_v1alpha1,
    validate_v1alpha2,
)
from sdq_api_validator.errors import Busy, bad_request, conflict, not_found
from sdq_contracts.config import NAME_PATTERN, RuntimeConfig
from sdq_contracts.keys import claim_check_key, output_location, parse_s3_uri
from sdq_contracts.links import output_files, with_link
from sdq_contracts.messages import (
    ATTR_MODEL,
    ATTR_RUNTIME,
    ATTR_TASKTYPE,
    ATTR_TRACE_HEADER,
    ApiVersion,
    StatusRecord,
    TaskMessage,
    TaskState,
    utcnow,
)
from sdq_contracts.requests import TaskAccepted, TaskAcceptedV1Alpha1
from sdq_contracts.status import PUBLISH_LEASE_UNTIL

_TASK_ID = re.compile(NAME_PATTERN)
# Fields of a status row that are bookkeeping, not for clients.
_PRIVATE_FIELDS = frozenset({"request_hash", "response", "expires_at", "published_at"})
# How long the request that created a row has to publish it before a replay may take over.
PUBLISH_LEASE_SECONDS = 30


@dataclass(frozen=True)
class ApiSettings:
    runtimes: tuple[RuntimeConfig, ...]
    output_bucket: str
    claim_check_bytes: int = 200_000
    status_ttl_days: int = 30
    # Lifetime of the download links of each status answer (downloads.link_seconds).
    download_link_seconds: int = 3600


@dataclass(frozen=True)
class Outcome:
    """What a request achieved, in domain terms (the HTTP edge picks the status code)."""

    body: dict[str, Any]
    task_id: str | None = None
    runtime: str | None = None


class Accepted(Outcome):
    """A new task is queued."""


class Replayed(Outcome):
    """The same request again: the original answer."""


class Found(Outcome):
    """A task's status."""


class Cancelled(Outcome):
    """The task is cancelled (it was queued, or already cancelled)."""


class CancelRequested(Outcome):
    """The task runs; its agent will interrupt it."""


def _request_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def public_view(record: StatusRecord) -> dict[str, Any]:
    hidden = set(_PRIVATE_FIELDS) | ({"stage", "retry_at"} if record.status.terminal else set())
    return record.model_dump(mode="json", exclude=hidden, exclude_none=True)


def read_row(item: dict[str, Any]) -> StatusRecord | None:
    """The row as a StatusRecord; None for a row no writer of today leaves (never a crash)."""
    try:
        return StatusRecord.from_item(item)
    except ValidationError:
        return None


def salvage_view(task_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """What can be said of an unreadable row: its id, and its status if that is a known one."""
    status = item.get("status")
    known = {s.value for s in TaskState}
    return {
        "id": task_id,
        "status": status if isinstance(status, str) and status in known else "unknown",
        "error": {
            "code": "unreadable_status",
            "message": "the task's status row is incomplete; it expires with its TTL",
            "permanent": True,
        },
    }


def check_task_id(task_id: str) -> str:
    if not _TASK_ID.match(task_id):
        raise bad_request("task id must match [A-Za-z0-9_-]{1,64}", field="id")
    return task_id


class TaskService:
    def __init__(
        self,
        settings: ApiSettings,
        store: StatusStore,
        publisher: Publisher,
        claims: ClaimStore,
        links: LinkSigner | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._claims = claims
        self._links = links

    @property
    def runtimes(self) -> Sequence[RuntimeConfig]:
        return self._settings.runtimes

    def submit(self, version: ApiVersion, body: bytes, status_base: str) -> Accepted | Replayed:
        with tracer.start_as_current_span("validate") as span:
            data = parse_json_object(body)
            if version is ApiVersion.V1ALPHA2:
                message = validate_v1alpha2(data, self._settings.runtimes)
            else:
                message = validate_v1alpha1(data, self._settings.runtimes)
            span.set_attribute("sdq.task_id", message.id)
        location = output_location(self._settings.output_bucket, message.prefix, message.id)
        status_url = f"{status_base}/v1alpha2/tasks/{message.id}"
        accepted: TaskAccepted | TaskAcceptedV1Alpha1
        if version is ApiVersion.V1ALPHA2:
            accepted = TaskAccepted(
                id_task=message.id,
                runtime=message.runtime,
                output_location=location,
                status_url=status_url,
            )
        else:
            accepted = TaskAcceptedV1Alpha1(
                id_task=message.id,
                sd_model_checkpoint=message.sd_model_checkpoint or "",
                output_location=location,
                status_url=status_url,
            )
        response = accepted.model_dump()

        now = utcnow()
        record = StatusRecord(
            id=message.id,
            runtime=message.runtime,
            tasktype=message.tasktype,
            status=TaskState.QUEUED,
            output_location=location,
            created_at=now,
            updated_at=now,
            request_hash=_request_hash(data),
            response=response,
            trace_id=xray_trace_id(),
            expires_at=int((now + timedelta(days=self._settings.status_ttl_days)).timestamp()),
        )
        # Only the request that creates the row publishes; it holds a publish lease meanwhile.
        lease = int(now.timestamp()) + PUBLISH_LEASE_SECONDS
        with tracer.start_as_current_span("status.create"):
            created = self._store.create(record.to_item() | {PUBLISH_LEASE_UNTIL: lease})
        if not created:
            return self._replay(record, message)
        self._publish_once(message)
        return Accepted(response, task_id=message.id, runtime=message.runtime)

    def _publish_once(self, message: TaskMessage) -> None:
        try:
            self._publish(message)
        except Exception:
            # Nothing reached the queue: forget the row so a retry of the same request is new.
            self._store.delete(message.id)
            raise
        self._store.mark_published(message.id)

    def _replay(self, record: StatusRecord, message: TaskMessage) -> Replayed:
        item = self._store.get(record.id)
        existing = read_row(item) if item is not None else None
        if item is None:  # deleted between our insert attempt and this read
            raise Busy("retry", "the task is being changed concurrently; retry the request")
        if (
            existing is None
            or existing.request_hash != record.request_hash
            or existing.response is None
        ):
            raise conflict(
                f"task id '{record.id}' was already used for a different request; "
                "use a new id, or resend the original body to get its answer",
                code="id_conflict",
            )
        if existing.published_at is None and existing.status is TaskState.QUEUED:
            # The creator may still be publishing: take over only once its lease has expired
            # (it died between storing the row and publishing), by a conditional write that
            # exactly one replay wins.
            now = int(utcnow().timestamp())
            if self._store.take_publish_lease(record.id, now, now + PUBLISH_LEASE_SECONDS):
                self._publish_once(message)
        return Replayed(existing.response, task_id=existing.id, runtime=existing.runtime)

    def _publish(self, message: TaskMessage) -> None:
        with tracer.start_as_current_span("sns.publish", kind=SpanKind.PRODUCER) as span:
            span.set_attribute("sdq.task_id", message.id)
            span.set_attribute("sdq.runtime", message.runtime)
            self._publish_in_span(message)

    def _publish_in_span(self, message: TaskMessage) -> None:
        payload = message.model_dump_json(exclude_none=True)
        if len(payload.encode("utf-8")) > self._settings.claim_check_bytes:
            content = json.dumps(message.content, separators=(",", ":")).encode("utf-8")
            uri = self._claims.put(claim_check_key(message.id), content)
            message = message.model_copy(update={"content": None, "content_ref": uri})
            payload = message.model_dump_json(exclude_none=True)
        attributes = {ATTR_RUNTIME: message.runtime, ATTR_TASKTYPE: message.tasktype.value}
        if message.api_version is ApiVersion.V1ALPHA1 and message.sd_model_checkpoint:
            attributes[ATTR_MODEL] = message.sd_model_checkpoint
        # The consumer continues this trace: SNS→SQS carries it as AWSTraceHeader on AWS; the
        # message attribute is the fallback where that system attribute is absent.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if ATTR_TRACE_HEADER in carrier:
            attributes[ATTR_TRACE_HEADER] = carrier[ATTR_TRACE_HEADER]
        self._publisher.publish(payload, attributes)

    def get(self, task_id: str) -> Found:
        item = self._store.get(check_task_id(task_id))
        if item is None:
            raise not_found(f"no task with id '{task_id}'")
        record = read_row(item)
        if record is None:
            return Found(salvage_view(task_id, item), task_id=task_id)
        view = public_view(record)
        files = self._linked_files(record)
        if files:
            view["files"] = files
        return Found(view, task_id=record.id, runtime=record.runtime)

    def _linked_files(self, record: StatusRecord) -> list[dict[str, Any]]:
        """Every output of the row (its ``files`` entry, or one described from its URI) with a
        link signed now: each answer carries fresh ones, the row itself never holds any."""
        seconds = self._settings.download_link_seconds
        signed_at = utcnow()
        out: list[dict[str, Any]] = []
        for file in output_files(record.outputs, record.files):
            link = None
            if self._links is not None:
                try:
                    link = self._links.sign(*parse_s3_uri(file.url), seconds)
                except ValueError:  # not an s3:// URI: listed, but nothing to sign
                    link = None
            shown = file if link is None else with_link(file, link, signed_at, seconds)
            out.append(shown.model_dump(mode="json", exclude_none=True))
        return out

    def _read(self, task_id: str) -> StatusRecord:
        item = self._store.get(task_id)
        if item is None:
            raise not_found(f"no task with id '{task_id}'")
        record = read_row(item)
        if record is None:
            raise conflict(
                f"task '{task_id}' has an incomplete status row and cannot be cancelled",
                code="not_cancellable",
            )
        return record

    def cancel(self, task_id: str) -> Cancelled | CancelRequested:
        record = self._read(check_task_id(task_id))
        if record.status is TaskState.QUEUED:
            cancelled = self._store.cancel_if_queued(task_id)
            if cancelled is not None and (view := read_row(cancelled)) is not None:
                return Cancelled(public_view(view), task_id=task_id, runtime=record.runtime)
            record = self._read(task_id)  # it started meanwhile
        if record.status is TaskState.RUNNING:
            asked = self._store.request_cancel_if_running(task_id)
            if asked is not None and (view := read_row(asked)) is not None:
                return CancelRequested(public_view(view), task_id=task_id, runtime=record.runtime)
            record = self._read(task_id)
        if record.status is TaskState.CANCELLED:
            return Cancelled(public_view(record), task_id=task_id, runtime=record.runtime)
        raise conflict(
            f"task '{task_id}' is already {record.status.value} and cannot be cancelled",
            code="not_cancellable",
        )
