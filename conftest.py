"""Repository-wide pytest fixtures (the shared AWS/emulator fixtures live in sdq_testing.pytest_plugin, libs/testing)."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
