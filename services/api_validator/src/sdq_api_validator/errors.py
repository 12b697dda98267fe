"""Client-visible failures: each maps to one HTTP status and a stable error code."""

from __future__ import annotations

from sdq_contracts.requests import ErrorBody, ErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        detail = ErrorDetail(code=self.code, message=self.message, field=self.field)
        return ErrorBody(error=detail).model_dump(exclude_none=True)


def bad_request(message: str, field: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message, field)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)
