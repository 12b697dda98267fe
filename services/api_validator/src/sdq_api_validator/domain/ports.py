"""Ports the domain needs from the outside world (implemented by adapters and by test fakes)."""

from __future__ import annotations

from typing import Protocol

from sdq_contracts.messages import StatusRecord


class StatusStore(Protocol):
    def get(self, task_id: str) -> StatusRecord | None: ...

    def create(self, record: StatusRecord) -> bool:
        """Insert if no row has this id; False when one exists already."""
        ...

    def mark_published(self, task_id: str) -> None: ...

    def cancel_if_queued(self, task_id: str) -> StatusRecord | None:
        """Set status cancelled if still queued; the updated row, or None if not queued."""
        ...

    def request_cancel_if_running(self, task_id: str) -> StatusRecord | None:
        """Set cancel_requested if running; the updated row, or None if not running."""
        ...

    def delete(self, task_id: str) -> None: ...


class Publisher(Protocol):
    def publish(self, message: str, attributes: dict[str, str]) -> str:
        """Publish to the input topic; returns the message id."""
        ...


class ClaimStore(Protocol):
    def put(self, key: str, body: bytes) -> str:
        """Store a task body too large for SNS; returns its s3:// URI."""
        ...
