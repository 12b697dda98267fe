"""`make release`: Lambda zips are versioned copies; the agent image refuses clearly without Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdq_infra.options import find_repo_root

# Terraform, checkov or the Lambda wheels: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = find_repo_root(Path(__file__).parent)


def run_cli(
    *args: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ) | {"SDQ_BUILD_DIR": str(tmp_path)} | (env or {})
    environment.pop("SDQ_TF_ENDPOINT", None)
    return subprocess.run(
        [sys.executable, "-m", "sdq_infra", "--config", str(REPO / "config.yaml"), *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_agent_image_release_without_docker_engine_fails_clearly(tmp_path: Path) -> None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    ):
        pytest.skip("a Docker engine is running here: the no-engine path cannot be shown")
    result = run_cli("release", "queue_agent", "1.2.3", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Docker" in result.stderr
    assert "Lambda releases work anywhere" in result.stderr


def test_lambda_release_is_a_versioned_zip(tmp_path: Path) -> None:
    result = run_cli("release", "model_sync", "1.2.3", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    released = tmp_path / "release" / "model_sync-1.2.3.zip"
    assert released.read_bytes() == (tmp_path / "lambda" / "model_sync.zip").read_bytes()
    assert str(released) in result.stdout


def test_release_rejects_unknown_service_and_bad_version(tmp_path: Path) -> None:
    unknown = run_cli("release", "runtime_emulator", "1", tmp_path=tmp_path)
    assert unknown.returncode == 1
    assert "releasable: api_validator, comfyui, model_sync, queue_agent, sdwebui" in unknown.stderr
    bad = run_cli("release", "model_sync", "../x", tmp_path=tmp_path)
    assert bad.returncode == 1
    assert "not a valid tag" in bad.stderr
