"""Makes the shared test helpers (agent_fakes, agent_stack) importable from every test module."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture
def stack(aws):
    """The provisioned AWS resources on a freshly reset moto server (integration tests)."""
    from agent_stack import make_stack

    return make_stack(aws.endpoint_url)
