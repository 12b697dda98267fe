"""In-memory fakes of the api_validator's ports, and helpers to build proxy events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings

from sdq_api_validator.adapters.http import Api
from sdq_api_validator.domain.service import ApiSettings, TaskService
from sdq_contracts import load_config, status
from sdq_contracts.messages import StatusRecord, utcnow

API_KEY = "sdq-test-key-7f3a9c1e5b"

# Opt-in deep fuzzing of the API (CI runs the default, bounded example count):
#   pytest --hypothesis-profile=sdq-fuzz services/api_validator/tests
settings.register_profile("sdq-fuzz", max_examples=3000, deadline=None)


class FakeStatusStore:
    """The status table in memory: every write is the transition of :mod:`sdq_contracts.status`."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def get(self, task_id: str) -> dict[str, Any] | None:
        row = self.rows.get(task_id)
        return dict(row) if row is not None else None

    def record(self, task_id: str) -> StatusRecord:
        return StatusRecord.from_item(self.rows[task_id])

    def _apply(self, task_id: str, new: dict[str, Any] | None) -> dict[str, Any] | None:
        if new is not None:
            self.rows[task_id] = new
        return new

    def create(self, item: dict[str, Any]) -> bool:
        return self._apply(item["id"], status.create(self.rows.get(item["id"]), item)) is not None

    def take_publish_lease(self, task_id: str, now: int, lease_until: int) -> bool:
        new = status.take_publish_lease(self.rows.get(task_id), now, lease_until)
        return self._apply(task_id, new) is not None

    def mark_published(self, task_id: str) -> None:
        self._apply(task_id, status.mark_published(self.rows.get(task_id), utcnow().isoformat()))

    def cancel_if_queued(self, task_id: str) -> dict[str, Any] | None:
        stamp = utcnow().isoformat()
        return self._apply(task_id, status.cancel_if_queued(self.rows.get(task_id), stamp))

    def request_cancel_if_running(self, task_id: str) -> dict[str, Any] | None:
        stamp = utcnow().isoformat()
        return self._apply(task_id, status.request_cancel_if_running(self.rows.get(task_id), stamp))

    def delete(self, task_id: str) -> None:
        self.rows.pop(task_id, None)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.fail_with: Exception | None = None

    def publish(self, message: str, attributes: dict[str, str]) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.published.append((json.loads(message), attributes))
        return f"msg-{len(self.published)}"


class FakeClaimStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> str:
        self.objects[key] = body
        return f"s3://outputs/{key}"


class Harness:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.store = FakeStatusStore()
        self.publisher = FakePublisher()
        self.claims = FakeClaimStore()
        self.service = TaskService(
            ApiSettings(runtimes=cfg.runtimes, output_bucket=cfg.buckets.outputs),
            self.store,
            self.publisher,
            self.claims,
        )
        self.api = Api(self.service, max_body_bytes=cfg.api.max_body_bytes)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        return call(self.api, method, path, body, headers)


def event(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    resource = path
    params = None
    if path.startswith("/v1alpha2/tasks/"):
        resource, params = "/v1alpha2/tasks/{id}", {"id": path.rsplit("/", 1)[1]}
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if isinstance(body, bytes):
        body = body.decode()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "x-api-key": API_KEY, "Host": "api.example"}
        | (headers or {}),
        "pathParameters": params,
        "requestContext": {"requestId": "req-1", "stage": "prod", "domainName": "api.example"},
        "body": body,
        "isBase64Encoded": False,
    }


def call(api: Api, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    result = api.handle(event(method, path, body, headers))
    return result["statusCode"], json.loads(result["body"]), result["headers"]


@pytest.fixture
def cfg(repo_root):
    return load_config(repo_root / "config.yaml")


@pytest.fixture
def h(cfg) -> Harness:
    return Harness(cfg)


@pytest.fixture
def make_harness():
    return Harness


@pytest.fixture
def call_api():
    return call
