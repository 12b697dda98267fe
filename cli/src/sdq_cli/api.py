"""The sdq HTTP API, with every error turned into a message that says what to do."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from sdq_cli.errors import CliError, Exit

_REFUSED = {400, 404, 405, 409, 413, 415, 422}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _error_text(body: dict[str, Any]) -> tuple[str, str | None]:
    raw = body.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    message = str(error.get("message") or body.get("message") or "no details")
    code = error.get("code")
    return message, str(code) if code else None


class ApiClient:
    def __init__(self, api_url: str, api_key: str | None, timeout_s: float = 30.0) -> None:
        self._url = api_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout_s

    @property
    def url(self) -> str:
        return self._url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self._url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._key:
            request.add_header("x-api-key", self._key)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as resp:  # noqa: S310
                return Answer(resp.status, _json(resp.read()), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            answer = Answer(exc.code, _json(exc.read()), dict(exc.headers or {}))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                f"cannot reach sdq at {self._url}: {reason} (is the endpoint right? for the local "
                "stack run `sdq local up`)",
                Exit.UNREACHABLE,
            ) from None
        raise self._failure(answer)

    def _failure(self, answer: Answer) -> CliError:
        message, code = _error_text(answer.body)
        status = answer.status
        if status == 401:
            return CliError(
                "the API needs a key and none was sent: pass --api-key, set SDQ_API_KEY, or use "
                "a profile that has api_key",
                Exit.AUTH,
            )
        if status == 403:
            return CliError(
                f"the API refused the key{' (' + message + ')' if message != 'no details' else ''}: "
                "check --api-key / SDQ_API_KEY / the profile's api_key",
                Exit.AUTH,
            )
        if status == 429:
            retry = (
                answer.headers.get("Retry-After") or answer.headers.get("retry-after") or "a few"
            )
            return CliError(
                f"throttled by the API: retry after {retry} s ({message})", Exit.THROTTLED
            )
        if status in _REFUSED:
            where = _error_field(answer.body)
            return CliError(
                f"the API refused the request ({status}{', ' + code if code else ''}): {message}"
                + (f" [field: {where}]" if where and where not in message else ""),
                Exit.REFUSED,
            )
        return CliError(f"sdq failed ({status}): {message}", Exit.ERROR)

    def submit(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body).body

    def status(self, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1alpha2/tasks/{task_id}").body

    def cancel(self, task_id: str) -> Answer:
        return self.call("DELETE", f"/v1alpha2/tasks/{task_id}")


def _error_field(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict) and error.get("field"):
        return str(error["field"])
    return None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"message": raw[:200].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"message": str(data)}
