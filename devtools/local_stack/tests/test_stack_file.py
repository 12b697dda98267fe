"""stack.json holds the local API key: it is written readable by its owner only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sdq_local.__main__ import write_private

pytestmark = pytest.mark.unit


def test_stack_file_is_written_mode_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    target = tmp_path / "stack.json"
    target.write_text("{}")  # an old, world-readable file is replaced
    target.chmod(0o644)
    old = os.umask(0o000)
    try:
        write_private(target, json.dumps({"api_key": "sdq-secret"}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {"api_key": "sdq-secret"}
    assert not (tmp_path / "stack.tmp").exists()
