"""The local stand-in for API Gateway: API keys, usage-plan throttling, REST proxy events.

It turns HTTP requests on 127.0.0.1 into API Gateway REST proxy events and hands them to the
same handler code the Lambda runs (``sdq_api_validator.adapters.http.Api``), so the local stack and
tests exercise the real front door.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from sdq_contracts.config import Throttle

# The resources the routing stack defines, in API Gateway's template form.
_RESOURCES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/v1alpha1/?$"), "/v1alpha1"),
    (re.compile(r"^/v1alpha2/?$"), "/v1alpha2"),
    (re.compile(r"^/v1alpha2/tasks/(?P<id>[^/]+)/?$"), "/v1alpha2/tasks/{id}"),
)
STAGE = "local"


class ProxyHandler(Protocol):
    def handle(self, event: Mapping[str, Any], trace_id: str | None = None) -> dict[str, Any]: ...


@dataclass
class TokenBucket:
    """API Gateway's throttle: `rate` tokens per second, at most `burst` held."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._stamp = self.clock()

    def take(self) -> float:
        """Take one token: 0.0 when allowed, else seconds until one is available."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def match_resource(path: str) -> tuple[str, dict[str, str]] | None:
    for pattern, resource in _RESOURCES:
        found = pattern.match(path)
        if found:
            return resource, found.groupdict()
    return None


class FrontDoor:
    def __init__(
        self,
        handler: ProxyHandler,
        api_keys: Sequence[str],
        throttle: Throttle,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_keys:
            raise ValueError("the front door needs at least one API key")
        self._handler = handler
        self._keys = tuple(api_keys)
        self._throttle = throttle
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        # Let the handler see (and refuse with a JSON 413) bodies just over its own limit.
        self._max_body = max_body_bytes

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body + 64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _key_ok(self, key: str) -> bool:
        return any(hmac.compare_digest(key.encode(), k.encode()) for k in self._keys)

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("x-api-key")
        if not key:
            return _error(401, "missing_api_key", "send your API key in the x-api-key header")
        if not self._key_ok(key):
            return _error(403, "invalid_api_key", "the API key in x-api-key is not valid")
        bucket = self._buckets.setdefault(
            key, TokenBucket(self._throttle.rate_limit, self._throttle.burst_limit, self._clock)
        )
        wait = bucket.take()
        if wait > 0:
            return _error(
                429,
                "too_many_requests",
                f"rate limit of {self._throttle.rate_limit:g} requests/s (burst {self._throttle.burst_limit}) exceeded",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        matched = match_resource(request.path)
        if matched is None:
            return _error(404, "not_found", f"no such resource: {request.path}")
        resource, params = matched
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "body_too_large", f"the request body exceeds {self._max_body} bytes")
        event = self._event(request, resource, params, body)
        result = await asyncio.to_thread(self._handler.handle, event)
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        return web.Response(
            status=int(result["statusCode"]), body=payload, headers=result.get("headers") or {}
        )

    def _event(
        self, request: web.Request, resource: str, params: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
        headers = dict(request.headers)
        headers["X-Forwarded-Proto"] = request.scheme
        return {
            "resource": resource,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers,
            "multiValueHeaders": {k: request.headers.getall(k) for k in request.headers},
            "queryStringParameters": dict(request.query) or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": request.method,
                "path": f"/{STAGE}{request.path}",
                "stage": STAGE,
                "requestId": str(uuid.uuid4()),
                "domainName": request.host,
                "identity": {"sourceIp": request.remote or "127.0.0.1"},
                "requestTimeEpoch": int(time.time() * 1000),
            },
            "body": text if body else None,
            "isBase64Encoded": encoded,
        }
