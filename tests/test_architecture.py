"""Boundaries the architecture promises, checked on the source:
- the domain of every service imports no AWS/HTTP library and reads no environment;
- a service never imports another service (libs/contracts is the only shared code);
- contracts stay pure (pydantic and PyYAML only)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

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
