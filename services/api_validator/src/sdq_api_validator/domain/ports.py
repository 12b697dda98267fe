"""Ports the domain needs from the outside world (implemented by adapters and by test fakes)."""

from __future__ import annotations

from typing import Any, Protocol


class StatusStore(Protocol):
    """The status row, moved only as :mod:`sdq_contracts.status` allows. Rows are plain items
    (the stored mapping); the service reads them into StatusRecords."""

    def get(self, task_id: str) -> dict[str, Any] | None: ...

    def create(self, item: dict[str, Any]) -> bool:
        """Insert if no row has this id; False when one exists already."""
        ...

    def take_publish_lease(self, task_id: str, now: int, lease_until: int) -> bool:
        """Take over publishing a queued, unpublished row whose publish lease has expired."""
        ...

    def mark_published(self, task_id: str) -> None: ...

    def cancel_if_queued(self, task_id: str) -> dict[str, Any] | None:
        """Set status cancelled if still queued; the updated row, or None if not queued."""
        ...

    def request_cancel_if_running(self, task_id: str) -> dict[str, Any] | None:
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


class LinkSigner(Protocol):
    def sign(self, bucket: str, key: str, seconds: int) -> str | None:
        """A pre-signed HTTPS GET URL of the object, valid ``seconds`` (at most: it also dies with
        the signing credentials); computed locally, no call to AWS. None when it cannot sign
        (no credentials)."""
        ...
