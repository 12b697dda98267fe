"""`make apply K8S_APPLY=yes` ends with the platform install; `make destroy CONFIRM=yes` drains
Karpenter's nodes (inside `sdq_infra destroy`, tested in terraform/tests) before the cluster
goes. Checked with `make -n` (recipe lines that
call $(MAKE) still run under -n, so the shell conditions are really evaluated; nothing else is)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdq_k8s.render import K8S_ROOT

pytestmark = pytest.mark.unit

REPO = K8S_ROOT.parent


def _make_n(*args: str) -> list[str]:
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.splitlines()


def _index(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    (tmp_path / "cluster.json").write_text("{}")
    (tmp_path / "k8s.json").write_text("{}")
    return tmp_path


def test_destroy_drains_through_terraform_unless_told_to_skip(outputs: Path) -> None:
    """The drain runs inside `sdq_infra destroy` (after its refusals, before the cluster goes);
    SKIP_DRAIN=yes passes --skip-drain for a cluster that is already gone."""
    (line,) = [x for x in _make_n("destroy", "CONFIRM=yes") if "sdq_infra destroy" in x]
    assert "--yes" in line
    assert "--skip-drain" not in line
    (line,) = [x for x in _make_n("destroy", "CONFIRM=yes", "SKIP_DRAIN=yes") if "sdq_infra" in x]
    assert "--skip-drain" in line


def test_apply_with_k8s_apply_installs_the_platform_after_terraform(outputs: Path) -> None:
    lines = _make_n("apply", "K8S_APPLY=yes", "AGENT_VERSION=1.0.0", f"OUTPUTS={outputs}")
    apply = _index(lines, "sdq_infra apply")
    check = _index(lines, "sdq_k8s check")
    install = _index(lines, "sdq_k8s platform install")
    assert apply < check < install
    assert f"--outputs {outputs}" in lines[install]
