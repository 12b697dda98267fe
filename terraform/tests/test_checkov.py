"""checkov over the synthesized JSON passes with the commented skip list (terraform/checkov.yaml).

checkov lives in its own venv (.venv-checkov, `make checkov-venv`): its pins conflict with the
workspace's boto3/botocore pins.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sdq_infra.options import find_repo_root

if TYPE_CHECKING:
    from conftest import Synth

# Terraform, checkov or the Lambda wheels: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = find_repo_root(Path(__file__).parent)

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CONFIG = REPO / "terraform" / "checkov.yaml"


def test_every_skip_says_why() -> None:
    skips = [line for line in CONFIG.read_text().splitlines() if line.strip().startswith("- CKV")]
    assert skips
    assert all("#" in line and line.split("#", 1)[1].strip() for line in skips)


def test_checkov_passes_on_every_stack(synthesized: Synth) -> None:
    if not CHECKOV.is_file():
        pytest.skip("checkov is not installed: run `make checkov-venv` (creates .venv-checkov)")
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(synthesized.outdir / "stacks"),
            "--config-file",
            str(CONFIG),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']}"
        for item in reports
        for check in item["results"]["failed_checks"]
    ]
    assert failed == []
    assert result.returncode == 0
    assert sum(item["summary"]["passed"] for item in reports) > 100
