"""`make apply K8S_APPLY=yes` ends with the platform install; `make destroy CONFIRM=yes` drains
Karpenter's nodes before Terraform destroys anything. Checked with `make -n` (recipe lines that
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


def test_destroy_drains_before_terraform(outputs: Path) -> None:
    lines = _make_n("destroy", "CONFIRM=yes", f"OUTPUTS={outputs}")
    assert _index(lines, "sdq_k8s platform drain") < _index(lines, "sdq_infra destroy --yes")


@pytest.mark.parametrize(
    "extra",
    [["CONFIRM=no"], ["SKIP_DRAIN=yes"], ["STACKS=runtime-sdruntime"], ["SDQ_TF_ENDPOINT=x"]],
)
def test_destroy_skips_the_drain_when_it_does_not_apply(outputs: Path, extra: list[str]) -> None:
    args = ["destroy", f"OUTPUTS={outputs}", *extra]
    if "CONFIRM=no" not in extra:
        args.append("CONFIRM=yes")
    assert not any("platform drain" in line for line in _make_n(*args))


def test_destroy_without_cluster_outputs_does_not_drain(tmp_path: Path) -> None:
    lines = _make_n("destroy", "CONFIRM=yes", f"OUTPUTS={tmp_path}")
    assert not any("platform drain" in line for line in lines)


def test_apply_with_k8s_apply_installs_the_platform_after_terraform(outputs: Path) -> None:
    lines = _make_n("apply", "K8S_APPLY=yes", "AGENT_VERSION=1.0.0", f"OUTPUTS={outputs}")
    apply = _index(lines, "sdq_infra apply")
    check = _index(lines, "sdq_k8s check")
    install = _index(lines, "sdq_k8s platform install")
    assert apply < check < install
    assert f"--outputs {outputs}" in lines[install]
