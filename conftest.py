"""Repository-wide pytest fixtures (the shared AWS/emulator fixtures live in sdq_testing.pytest_plugin, libs/testing)."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: CI-sized by default (the unit layer stays fast); `HYPOTHESIS_PROFILE=thorough`
# (e.g. `make test-thorough`) runs thousands of examples per property.
settings.register_profile("ci", max_examples=60)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
