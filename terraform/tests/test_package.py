"""The Lambda zip builder: Lambda-platform wheels, deterministic bytes, importable contents."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sdq_infra import package
from sdq_infra.options import find_repo_root

# Terraform, checkov or the Lambda wheels: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = find_repo_root(Path(__file__).parent)

PACKAGES = {"api_validator": "sdq_api_validator", "model_sync": "sdq_model_sync"}


@pytest.mark.parametrize("service", package.LAMBDA_SERVICES)
def test_zip_holds_service_contracts_and_lambda_wheels(lambda_zips: Path, service: str) -> None:
    with zipfile.ZipFile(lambda_zips / f"{service}.zip") as zf:
        names = zf.namelist()
        infos = zf.infolist()
    assert names == sorted(names)
    assert f"{PACKAGES[service]}/__init__.py" in names
    assert "sdq_contracts/naming.py" in names
    assert "sdq_observability/logs.py" in names  # every service logs through the shared library
    assert any(n.startswith("structlog/") for n in names)  # ... and its dependencies come along
    assert any(
        n.startswith("pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu") for n in names
    )
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert not [n for n in names if n.startswith(("bin/", ".lock"))]
    assert {info.date_time for info in infos} == {package.FIXED_TIME}


def test_same_inputs_same_bytes(lambda_zips: Path, tmp_path: Path) -> None:
    again = package.build("model_sync", REPO, tmp_path)
    assert again.path.read_bytes() == (lambda_zips / "model_sync.zip").read_bytes()


@pytest.mark.parametrize("service", package.LAMBDA_SERVICES)
def test_zip_imports_alone(lambda_zips: Path, tmp_path: Path, service: str) -> None:
    """Extracted, the zip is all an isolated interpreter needs to import the code."""
    with zipfile.ZipFile(lambda_zips / f"{service}.zip") as zf:
        zf.extractall(tmp_path)
    modules = [
        "sdq_contracts.naming",
        "sdq_contracts.messages",
        "sdq_observability.logs",
        "sdq_observability.tracing",
        PACKAGES[service],
    ]
    # The handler is imported as soon as the service has one (services are written in parallel).
    if (REPO / "services" / service / "src" / PACKAGES[service] / "handler.py").is_file():
        modules.append(f"{PACKAGES[service]}.handler")
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(tmp_path)!r}), module.__file__\n"
        "    print(name)\n"
        f"if {PACKAGES[service] + '.handler'!r} in sys.modules:\n"
        f"    assert callable(sys.modules[{PACKAGES[service] + '.handler'!r}].handle)\n"
    )
    # -I -S: no site-packages, no PYTHONPATH, no user site: only the stdlib and the zip.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == modules


@pytest.mark.parametrize("service", package.LAMBDA_SERVICES)
def test_every_sdq_library_a_service_depends_on_goes_into_its_zip(service: str) -> None:
    libraries = package.first_party_libraries(REPO / "services" / service / "pyproject.toml", REPO)
    assert [lib.relative_to(REPO).as_posix() for lib in libraries] == [
        "libs/contracts",
        "libs/observability",
    ]
    assert "pytest" not in " ".join(
        package.third_party_requirements([lib / "pyproject.toml" for lib in libraries])
    )
