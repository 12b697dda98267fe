"""In-memory fakes of the api_validator's ports, and helpers to build proxy events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdq_api_validator.domain.api import Api
from sdq_api_validator.domain.service import ApiSettings, TaskService
from sdq_contracts import load_config
from sdq_contracts.messages import StatusRecord, TaskState, utcnow

API_KEY = "sdq-test-key-7f3a9c1e5b"


class FakeStatusStore:
    def __init__(self) -> None:
        self.rows: dict[str, StatusRecord] = {}

    def get(self, task_id: str) -> StatusRecord | None:
        return self.rows.get(task_id)

    def create(self, record: StatusRecord) -> bool:
        if record.id in self.rows:
            return False
        self.rows[record.id] = record
        return True

    def mark_published(self, task_id: str) -> None:
        self.rows[task_id] = self.rows[task_id].model_copy(update={"published_at": utcnow()})

    def _update_if(self, task_id: str, state: TaskState, **changes: Any) -> StatusRecord | None:
        row = self.rows.get(task_id)
        if row is None or row.status is not state:
            return None
        self.rows[task_id] = row.model_copy(update=changes | {"updated_at": utcnow()})
        return self.rows[task_id]

    def cancel_if_queued(self, task_id: str) -> StatusRecord | None:
        return self._update_if(
            task_id, TaskState.QUEUED, status=TaskState.CANCELLED, finished_at=utcnow()
        )

    def request_cancel_if_running(self, task_id: str) -> StatusRecord | None:
        return self._update_if(task_id, TaskState.RUNNING, cancel_requested=True)

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
