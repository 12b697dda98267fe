"""Turn a Lambda event into model-bucket object changes.

Accepted shapes (the same S3 event records, delivered three ways):

- S3 → Lambda: ``{"Records": [{"eventSource": "aws:s3", "s3": {...}}, ...]}``
- S3 → SQS → Lambda: ``{"Records": [{"eventSource": "aws:sqs", "messageId", "body": "<S3 event
  JSON>"}]}``; the body may also be an SNS notification envelope (SNS → SQS without raw delivery)
- S3 → SNS → Lambda: ``{"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "<JSON>"}}]}``

Keys arrive URL-encoded (``+`` for space, ``%XX``) and are decoded here. ``s3:TestEvent``
(sent when a notification is configured) and event types other than object created/removed are
ignored; malformed records are reported and skipped, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

# An S3 event in an SNS envelope in an SQS body is the deepest nesting we accept.
_MAX_DEPTH = 3


class ChangeKind(StrEnum):
    CREATED = "created"
    REMOVED = "removed"


class EventOrigin(StrEnum):
    S3 = "s3"
    SQS = "sqs"
    SNS = "sns"


# S3 event name prefixes that change the bucket's content, and what they mean for the cache.
_EVENT_KINDS: tuple[tuple[str, ChangeKind], ...] = (
    ("ObjectCreated:", ChangeKind.CREATED),
    ("ObjectRemoved:", ChangeKind.REMOVED),
    ("LifecycleExpiration:", ChangeKind.REMOVED),
)


@dataclass(frozen=True)
class ObjectChange:
    bucket: str
    key: str
    kind: ChangeKind
    event_name: str


@dataclass(frozen=True)
class SourceMessage:
    """One delivered message (an SQS message, an SNS record, or the direct S3 event).

    ``message_id`` is the SQS message id (what a partial batch response names), else None.
    """

    message_id: str | None
    changes: tuple[ObjectChange, ...] = ()
    ignored: tuple[str, ...] = ()
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedEvent:
    origin: EventOrigin
    messages: tuple[SourceMessage, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> tuple[ObjectChange, ...]:
        return tuple(change for message in self.messages for change in message.changes)

    @property
    def malformed(self) -> tuple[str, ...]:
        return tuple(problem for message in self.messages for problem in message.malformed)

    @property
    def ignored(self) -> tuple[str, ...]:
        return tuple(reason for message in self.messages for reason in message.ignored)


@dataclass
class _Collector:
    changes: list[ObjectChange] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def message(self, message_id: str | None) -> SourceMessage:
        return SourceMessage(
            message_id, tuple(self.changes), tuple(self.ignored), tuple(self.malformed)
        )


def parse_event(event: object) -> ParsedEvent:
    """Parse any accepted event shape; never raises on bad input (it is reported instead)."""
    if not isinstance(event, Mapping):
        return ParsedEvent(
            EventOrigin.S3,
            (SourceMessage(None, malformed=(f"event is a {type(event).__name__}",)),),
        )
    records = event.get("Records")
    if isinstance(records, list) and records and all(_is_sqs(r) for r in records):
        return ParsedEvent(EventOrigin.SQS, tuple(_sqs_message(r) for r in records))
    if isinstance(records, list) and records and all(_is_sns(r) for r in records):
        messages = []
        for record in records:
            collector = _Collector()
            _sns_record(record, collector, depth=1)
            messages.append(collector.message(None))
        return ParsedEvent(EventOrigin.SNS, tuple(messages))
    collector = _Collector()
    _payload(event, collector, depth=1)
    return ParsedEvent(EventOrigin.S3, (collector.message(None),))


def _is_sqs(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs"


def _is_sns(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("EventSource") == "aws:sns"


def _sqs_message(record: Mapping[str, Any]) -> SourceMessage:
    collector = _Collector()
    message_id = record.get("messageId")
    _json_payload(record.get("body"), collector, depth=2, where="SQS body")
    return collector.message(message_id if isinstance(message_id, str) else None)


def _sns_record(record: Mapping[str, Any], collector: _Collector, depth: int) -> None:
    sns = record.get("Sns")
    message = sns.get("Message") if isinstance(sns, Mapping) else None
    _json_payload(message, collector, depth=depth + 1, where="SNS message")


def _json_payload(raw: object, collector: _Collector, depth: int, where: str) -> None:
    if not isinstance(raw, str):
        collector.malformed.append(f"{where} is not a string")
        return
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        collector.malformed.append(f"{where} is not JSON: {exc.msg}")
        return
    _payload(payload, collector, depth)


def _payload(payload: object, collector: _Collector, depth: int) -> None:
    if depth > _MAX_DEPTH:
        collector.malformed.append("envelopes nested too deep")
        return
    if not isinstance(payload, Mapping):
        collector.malformed.append(f"payload is a {type(payload).__name__}, not an object")
        return
    if payload.get("Event") == "s3:TestEvent":
        collector.ignored.append("s3:TestEvent")
        return
    if payload.get("Type") == "Notification" and "Message" in payload:
        _json_payload(payload["Message"], collector, depth + 1, where="SNS envelope message")
        return
    records = payload.get("Records")
    if not isinstance(records, list):
        collector.malformed.append("no Records list")
        return
    for record in records:
        if _is_sns(record):
            _sns_record(record, collector, depth)
        else:
            _s3_record(record, collector)


def _s3_record(record: object, collector: _Collector) -> None:
    if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
        collector.malformed.append("record is not an aws:s3 record")
        return
    event_name = record.get("eventName")
    s3 = record.get("s3")
    bucket = _dig(s3, ("bucket", "name"))
    raw_key = _dig(s3, ("object", "key"))
    if not isinstance(event_name, str) or not isinstance(bucket, str) or not bucket:
        collector.malformed.append("S3 record without eventName or bucket name")
        return
    if not isinstance(raw_key, str) or not raw_key:
        collector.malformed.append(f"S3 record {event_name} in {bucket} without object key")
        return
    kind = next((k for prefix, k in _EVENT_KINDS if event_name.startswith(prefix)), None)
    if kind is None:
        collector.ignored.append(f"event {event_name}")
        return
    collector.changes.append(ObjectChange(bucket, unquote_plus(raw_key), kind, event_name))


def _dig(value: object, path: Sequence[str]) -> object:
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value
