"""Domain errors: what is wrong, in the domain's words. The HTTP edge
(:mod:`sdq_api_validator.adapters.http`) maps each kind to a status code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a client can act on; ``code`` is stable, ``field`` names the culprit."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class InvalidRequest(DomainError):
    """The request can never succeed as sent (validation)."""


class NotFound(DomainError):
    """No task with this id."""


class Conflict(DomainError):
    """The request contradicts the task's state (id reuse, cancel of an ended task)."""


class Busy(DomainError):
    """The task is being changed concurrently; the same request may succeed on retry."""


def bad_request(
    message: str, field: str | None = None, code: str = "invalid_request"
) -> InvalidRequest:
    return InvalidRequest(code, message, field)


def not_found(message: str) -> NotFound:
    return NotFound("not_found", message)


def conflict(message: str, code: str = "conflict") -> Conflict:
    return Conflict(code, message)
