"""The HTTP edge: API Gateway REST proxy event → TaskService call → proxy response.

Event parsing, routing, body limits and content types are HTTP matters and live here; the
service returns domain outcomes and raises domain errors, which this module maps to statuses."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sdq_api_validator.domain.service import (
    Accepted,
    Cancelled,
    CancelRequested,
    Found,
    Outcome,
    Replayed,
    TaskService,
)
from sdq_api_validator.domain.tracing import tracer, xray_trace_id
from sdq_api_validator.errors import Busy, Conflict, DomainError, InvalidRequest, NotFound
from sdq_contracts.messages import ApiVersion
from sdq_contracts.requests import ErrorBody, ErrorDetail

log = structlog.get_logger("sdq.api")
TRACE_HEADER = "X-Amzn-Trace-Id"

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_JSON_TYPES = ("application/json", "application/vnd.api+json")

Route = Callable[[TaskService, "Request"], Outcome]
_OUTCOME_STATUS: dict[type[Outcome], int] = {
    Accepted: 202,
    Replayed: 202,
    Found: 200,
    Cancelled: 200,
    CancelRequested: 202,
}
_ERROR_STATUS: dict[type[DomainError], int] = {
    InvalidRequest: 400,
    NotFound: 404,
    Conflict: 409,
    Busy: 503,
}


class HttpError(Exception):
    """A failure of the HTTP exchange itself (route, method, body size, media type)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def of(cls, error: DomainError) -> HttpError:
        status = next((s for kind, s in _ERROR_STATUS.items() if isinstance(error, kind)), 400)
        return cls(status, error.code, error.message, error.field)

    def body(self) -> dict[str, object]:
        detail = ErrorDetail(code=self.code, message=self.message, field=self.field)
        return ErrorBody(error=detail).model_dump(exclude_none=True)


@dataclass(frozen=True)
class Request:
    method: str
    resource: str
    path: str
    headers: Mapping[str, str]
    path_parameters: Mapping[str, str]
    body: bytes
    request_id: str
    status_base: str


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    raw = event.get("headers") or {}
    return {str(k).lower(): str(v) for k, v in raw.items() if v is not None}


def _status_base(event: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    ctx = event.get("requestContext") or {}
    domain = ctx.get("domainName") or headers.get("host") or "localhost"
    proto = headers.get("x-forwarded-proto", "https")
    stage = ctx.get("stage")
    # Custom domains and the local front door serve at the root; execute-api hosts under /stage.
    prefix = f"/{stage}" if stage and ".execute-api." in str(domain) else ""
    return f"{proto}://{domain}{prefix}"


def parse_event(event: Mapping[str, Any]) -> Request:
    headers = _headers(event)
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "invalid_body", "the request body is not valid base64") from None
    else:
        body = raw.encode("utf-8")
    ctx = event.get("requestContext") or {}
    return Request(
        method=str(event.get("httpMethod", "GET")).upper(),
        resource=str(event.get("resource") or event.get("path") or "/"),
        path=str(event.get("path") or "/"),
        headers=headers,
        path_parameters=dict(event.get("pathParameters") or {}),
        body=body,
        request_id=str(ctx.get("requestId") or ""),
        status_base=_status_base(event, headers),
    )


def _check_json(request: Request, max_body_bytes: int) -> None:
    if len(request.body) > max_body_bytes:
        raise HttpError(
            413,
            "body_too_large",
            f"the request body is {len(request.body)} bytes; the limit is {max_body_bytes} bytes "
            "(send input images by URL instead of inline base64)",
        )
    ctype = request.headers.get("content-type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in _JSON_TYPES:
        raise HttpError(
            415, "unsupported_media_type", "send the body as Content-Type: application/json"
        )


class Api:
    """Routes one proxy event; every failure becomes a JSON error with the right status."""

    def __init__(self, service: TaskService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body = max_body_bytes
        self._routes: dict[str, dict[str, Route]] = {
            "/v1alpha1": {"POST": self._submit(ApiVersion.V1ALPHA1)},
            "/v1alpha2": {"POST": self._submit(ApiVersion.V1ALPHA2)},
            "/v1alpha2/tasks/{id}": {
                "GET": lambda svc, req: svc.get(req.path_parameters.get("id", "")),
                "DELETE": lambda svc, req: svc.cancel(req.path_parameters.get("id", "")),
            },
        }

    def _submit(self, version: ApiVersion) -> Route:
        def route(svc: TaskService, req: Request) -> Outcome:
            _check_json(req, self._max_body)
            return svc.submit(version, req.body, req.status_base)

        return route

    def handle(self, event: Mapping[str, Any], trace_header: str | None = None) -> dict[str, Any]:
        """Handle one proxy event. The trace continues from `trace_header` (Lambda's
        _X_AMZN_TRACE_ID) or the request's X-Amzn-Trace-Id header; a missing or malformed one
        starts a new trace."""
        header = trace_header or _headers(event).get(TRACE_HEADER.lower())
        parent = propagate.extract({TRACE_HEADER: header}) if header else None
        method = str(event.get("httpMethod", ""))
        resource = str(event.get("resource") or event.get("path") or "")
        with tracer.start_as_current_span(
            f"{method} {resource}", context=parent, kind=SpanKind.SERVER
        ) as span:
            response = self._handle(event, method, resource, span)
            span.set_attribute("http.status_code", response["statusCode"])
            if response["statusCode"] >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    def _handle(
        self, event: Mapping[str, Any], method: str, resource: str, span: trace.Span
    ) -> dict[str, Any]:
        started = time.perf_counter()
        request_id = str((event.get("requestContext") or {}).get("requestId") or "")
        bound = log.bind(
            request_id=request_id, method=method, resource=resource, trace_id=xray_trace_id(span)
        )
        headers: dict[str, str] = {}
        try:
            request = parse_event(event)
            methods = self._routes.get(request.resource)
            if methods is None:
                raise HttpError(404, "not_found", f"no such resource: {request.path}")
            route = methods.get(request.method)
            if route is None:
                headers["Allow"] = ", ".join(sorted(methods))
                raise HttpError(405, "method_not_allowed", f"{request.method} is not allowed here")
            try:
                outcome = route(self._service, request)
            except DomainError as exc:
                raise HttpError.of(exc) from None
            status, body = _OUTCOME_STATUS[type(outcome)], outcome.body
            if isinstance(outcome, Replayed):
                headers["Idempotent-Replayed"] = "true"
            if outcome.task_id:
                span.set_attribute("sdq.task_id", outcome.task_id)
                span.set_attribute("sdq.runtime", outcome.runtime or "")
            bound = bound.bind(task_id=outcome.task_id, runtime=outcome.runtime)
        except HttpError as exc:
            status, body = exc.status, exc.body()
            bound = bound.bind(error_code=exc.code, field=exc.field)
        except Exception as exc:
            bound.exception("request_failed")
            span.record_exception(exc)
            failure = HttpError(
                500,
                "internal_error",
                f"sdq failed to handle the request (request id {request_id}); retry later",
            )
            status, body = failure.status, failure.body()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        level = "warning" if 400 <= status < 500 else ("error" if status >= 500 else "info")
        getattr(bound, level)("request_handled", status=status, elapsed_ms=elapsed_ms)
        return {
            "statusCode": status,
            "headers": JSON_HEADERS | headers,
            "body": json.dumps(body, separators=(",", ":")),
            "isBase64Encoded": False,
        }
