"""Fixtures of the model_sync tests: the node script and an AWS CLI to run it with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sdq_model_sync.node_script import node_script_path

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def node_script() -> Path:
    return node_script_path()


@pytest.fixture(scope="session")
def aws_cli_dir() -> Path:
    """Directory holding the `aws` CLI: `make awscli`'s venv first, else whatever is on PATH."""
    venv_cli = REPO_ROOT / ".venv-awscli" / "bin" / "aws"
    if venv_cli.is_file():
        return venv_cli.parent
    found = shutil.which("aws")
    if found:
        return Path(found).parent
    message = "no aws CLI: run `make awscli` (creates .venv-awscli)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
