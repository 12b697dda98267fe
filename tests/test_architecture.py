"""Boundaries the architecture promises, checked on the source:
- the domain of every service imports no AWS/HTTP library and reads no environment;
- a service never imports another service (shared code lives in libs/);
- contracts stay pure (pydantic and PyYAML only);
- one house: the three services have the same files for the same roles, read the environment
  only in settings.py, set up logs and traces only through sdq_observability, and log
  snake_case event names."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "api_validator": "sdq_api_validator",
    "queue_agent": "sdq_queue_agent",
    "model_sync": "sdq_model_sync",
}
IO_LIBRARIES = {
    "boto3",
    "botocore",
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "requests",
    "httpx",
    "urllib3",
    "socket",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def reads_environment(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
    return False


def domain_files(service: str) -> list[Path]:
    package = ROOT / "services" / service / "src" / SERVICES[service] / "domain"
    return sorted(package.rglob("*.py"))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_domain_imports_no_io_library_and_reads_no_environment(service):
    files = domain_files(service)
    assert files, f"{service} has no domain package"
    for path in files:
        top = {name.split(".")[0] for name in imports_of(path)}
        assert not top & IO_LIBRARIES, f"{path.relative_to(ROOT)} imports {top & IO_LIBRARIES}"
        assert not {"urllib.request", "http.client"} & imports_of(path), path
        assert not reads_environment(path), f"{path.relative_to(ROOT)} reads os.environ"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_never_imports_another_service(service):
    others = {pkg for name, pkg in SERVICES.items() if name != service}
    for path in (ROOT / "services" / service / "src").rglob("*.py"):
        top = {name.split(".")[0] for name in imports_of(path)}
        assert not top & (others | {"sdq_local", "sdq_runtime_emulator"}), (
            f"{path} imports {top & others}"
        )


def test_contracts_are_pure():
    allowed = {"pydantic", "yaml", "sdq_contracts", "__future__"}
    for path in (ROOT / "libs" / "contracts" / "src").rglob("*.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top in allowed or top in sys.stdlib_module_names, f"{path} imports {name}"


# Entry point, composition root, settings, errors, ports (observability: libs/observability).
ROLES = ("app.py", "settings.py", "errors.py", "domain/ports.py", "adapters/__init__.py")
ENTRY = {"api_validator": "handler.py", "model_sync": "handler.py", "queue_agent": "__main__.py"}
SNAKE_EVENT = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
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
        if (bad := [n for n in _event_names(p) if not SNAKE_EVENT.match(n)])
    }
    assert not offenders, offenders


def _project(path: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(path.read_text())["project"]
    return project


def test_installing_the_cli_never_pulls_pytest() -> None:
    """The CLI with its `local` extra, and every sdq package that pulls in, need no test tool."""
    projects = {
        _project(p)["name"]: _project(p)
        for p in ROOT.glob("*/**/pyproject.toml")
        if ".venv" not in p.parts and "build" not in p.parts
    }
    seen: set[str] = set()
    pending = ["sdq-cli"]
    while pending:
        project = projects[pending.pop()]
        requirements = [*project.get("dependencies", [])]
        if project["name"] == "sdq-cli":
            requirements += project["optional-dependencies"]["local"]
        for requirement in requirements:
            name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
            assert name not in {"pytest", "sdq-testing", "hypothesis"}, (project["name"], name)
            if name.startswith("sdq-") and name not in seen:
                seen.add(name)
                pending.append(name)
    assert "sdq-local" in seen
