"""The three services share one shape: the same files for the same roles, the environment read
only in settings.py, logs and traces set up only through sdq_observability (with secrets scrubbed
in every service), and one log-event naming style."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from sdq_contracts.config import RuntimeConfig, RuntimeType

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "api_validator": "sdq_api_validator",
    "queue_agent": "sdq_queue_agent",
    "model_sync": "sdq_model_sync",
}
# Entry point, composition root, settings, errors, ports (observability: libs/observability).
ROLES = ("app.py", "settings.py", "errors.py", "domain/ports.py", "adapters/__init__.py")
ENTRY = {"api_validator": "handler.py", "model_sync": "handler.py", "queue_agent": "__main__.py"}
SNAKE_EVENT = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Files whose log events are still prose, owned by work in flight (exactly-once: the worker;
# agent fixes: the runtime adapters); convert them and remove them from this list.
EVENT_STYLE_PENDING = {
    "services/queue_agent/src/sdq_queue_agent/domain/worker.py",
    "services/queue_agent/src/sdq_queue_agent/adapters/sdwebui.py",
    "services/queue_agent/src/sdq_queue_agent/adapters/comfyui.py",
}
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def package(service: str) -> Path:
    return ROOT / "services" / service / "src" / SERVICES[service]


def sources(service: str) -> list[Path]:
    return sorted(package(service).rglob("*.py"))


def calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_same_files_play_the_same_roles(service: str) -> None:
    missing = [role for role in (*ROLES, ENTRY[service]) if not (package(service) / role).is_file()]
    assert not missing, f"{service} lacks {missing}"
    copies = {"logs.py", "telemetry.py", "tracing.py", "composition.py", "metrics.py"}
    assert not {p.name for p in package(service).glob("*.py")} & copies


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_only_settings_reads_the_environment(service: str) -> None:
    for path in sources(service):
        if path.name == "settings.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & {"environ", "getenv"}, f"{path.relative_to(ROOT)} reads the environment"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_logs_and_traces_are_set_up_only_by_the_shared_library(service: str) -> None:
    forbidden = {"structlog.configure", "trace.set_tracer_provider", "TracerProvider"}
    for path in sources(service):
        used = {dotted(call.func) for call in calls(path)} & forbidden
        assert not used, f"{path.relative_to(ROOT)} calls {used}: use sdq_observability"


def _event_names(path: Path) -> list[str]:
    names = []
    for call in calls(path):
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in LOG_METHODS
            and call.args
            and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str)
            and "log" in dotted(func.value).lower()
        ):
            names.append(call.args[0].value)
    return names


def test_log_events_are_snake_case_names() -> None:
    files = [p for s in SERVICES for p in sources(s)]
    files += sorted((ROOT / "devtools" / "local_stack" / "src").rglob("*.py"))
    offenders = {
        str(p.relative_to(ROOT)): bad
        for p in files
        if str(p.relative_to(ROOT)) not in EVENT_STYLE_PENDING
        and (bad := [n for n in _event_names(p) if not SNAKE_EVENT.match(n)])
    }
    assert not offenders, offenders


# --- secrets never reach a log line, in any service -----------------------------------------

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
    log = structlog.get_logger(SERVICES[service])
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
