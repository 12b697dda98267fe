"""No secret reaches a log line in any service: each one configured through its own composition
root (sdq_observability underneath), then logging API keys, auth headers, webhook secrets and
signed URLs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from sdq_contracts.config import RuntimeConfig, RuntimeType

pytestmark = pytest.mark.unit

LOGGERS = {
    "api_validator": "sdq.api",
    "queue_agent": "sdq_queue_agent",
    "model_sync": "sdq.model_sync",
}

API_KEY = "sdq-api-key-0123456789"
WEBHOOK_SECRET = "whsec-very-secret-42"
SIGNED = (
    "https://outputs.s3.amazonaws.com/out/t1/1.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20250101&X-Amz-Signature=0badc0ffee0badc0ffee"
)
SECRETS = (API_KEY, WEBHOOK_SECRET, "AKIAEXAMPLE", "0badc0ffee0badc0ffee", "Bearer tok-123")
RUNTIMES = json.dumps(
    [
        RuntimeConfig(name="sdruntime", type=RuntimeType.SDWEBUI, dynamic_model=True).model_dump(
            mode="json"
        )
    ]
)


def _api() -> Callable[[], None]:
    from sdq_api_validator.app import configure_observability
    from sdq_api_validator.settings import load_settings

    env = {
        "SDQ_RUNTIMES": RUNTIMES,
        "SDQ_INPUT_TOPIC_ARN": "arn:aws:sns:us-west-2:000000000000:in",
        "SDQ_STATUS_TABLE": "status",
        "SDQ_OUTPUT_BUCKET": "outputs",
    }
    return lambda: configure_observability(load_settings(env))


def _agent() -> Callable[[], None]:
    from sdq_queue_agent.app import configure_observability
    from sdq_queue_agent.settings import load_settings

    env = {
        "SDQ_RUNTIME_NAME": "sdruntime",
        "SDQ_RUNTIME_TYPE": "sdwebui",
        "SDQ_RUNTIME_URL": "http://127.0.0.1:7860",
        "SDQ_QUEUE_URL": "http://sqs/q",
        "SDQ_RESULT_TOPIC_ARN": "arn:aws:sns:us-west-2:000000000000:out",
        "SDQ_STATUS_TABLE": "status",
        "SDQ_OUTPUT_BUCKET": "outputs",
        "SDQ_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    settings = load_settings(env)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    def configure() -> None:
        configure_observability(settings, secret)

    return configure


def _model_sync() -> Callable[[], None]:
    from sdq_model_sync.app import configure_observability
    from sdq_model_sync.settings import load_settings

    env = {"SDQ_CLUSTER_NAME": "sdq", "SDQ_MODEL_BUCKET": "sdq-models"}
    return lambda: configure_observability(load_settings(env))


CONFIGURE: dict[str, Callable[[], Callable[[], None]]] = {
    "api_validator": _api,
    "queue_agent": _agent,
    "model_sync": _model_sync,
}


@pytest.mark.parametrize("service", sorted(CONFIGURE))
def test_secrets_never_reach_a_log_line(
    service: str, capsys: pytest.CaptureFixture[str], spans: Any
) -> None:
    CONFIGURE[service]()()
    log = structlog.get_logger(LOGGERS[service])
    log.info(
        "request_handled",
        headers={"x-api-key": API_KEY, "Authorization": "Bearer tok-123"},
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        url=SIGNED,
        note=f"callback signed with {WEBHOOK_SECRET}" if service == "queue_agent" else "n/a",
    )
    log.error("task_failed", error=f"GET {SIGNED} answered 403")
    out = capsys.readouterr().out
    lines = [json.loads(raw) for raw in out.splitlines()]
    assert [line["event"] for line in lines] == ["request_handled", "task_failed"]
    for secret in SECRETS:
        assert secret not in out, f"{service} logged {secret!r}"
    assert lines[0]["url"] == "https://outputs.s3.amazonaws.com/out/t1/1.png?<redacted>"
    assert lines[0]["headers"] == {"x-api-key": "<redacted>", "Authorization": "<redacted>"}
