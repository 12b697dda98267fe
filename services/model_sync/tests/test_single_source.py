"""The boot path and the SSM path run the same script, and that script has one source."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from sdq_contracts.naming import MODEL_CACHE_HOST_PATH
from sdq_model_sync.app import node_sync_spec
from sdq_model_sync.domain.commands import node_command
from sdq_model_sync.node_script import SCRIPT_NAME
from sdq_model_sync.settings import DEFAULT_NODE_SCRIPT_PATH, Settings

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[3]
# The script's first comment line: any file embedding the script carries it.
MARKER = "# sdq-model-sync.sh: mirror the sdq model bucket"
SKIP_DIRS = {".git", "node_modules", "cdktf.out", "__pycache__"}


def repo_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [REPO_ROOT / name for name in out.splitlines() if not SKIP_DIRS & set(Path(name).parts)]


def test_ssm_command_invokes_the_node_script_path(node_script: Path) -> None:
    settings = Settings(cluster_name="sdq", model_bucket="sdq-models")
    [line] = node_command(node_sync_spec(settings), []).commands
    script = shlex.split(line)[0]
    assert script == DEFAULT_NODE_SCRIPT_PATH
    assert Path(script).name == node_script.name == SCRIPT_NAME


def test_script_defaults_to_the_contract_cache_path(node_script: Path) -> None:
    text = node_script.read_text()
    assert f"readonly DEFAULT_DEST={MODEL_CACHE_HOST_PATH}\n" in text
    assert text.splitlines()[1] == MARKER + " (s3://BUCKET[/PREFIX]) into a GPU node's"


def test_the_script_has_one_source_and_embedded_copies_match_it(node_script: Path) -> None:
    files = repo_files()
    copies = [p for p in files if p.name == SCRIPT_NAME and p.resolve() != node_script.resolve()]
    assert copies == [], "the node script must exist once; inline it from its one source"
    script_lines = [ln.strip() for ln in node_script.read_text().splitlines() if ln.strip()]
    for path in files:
        if path.suffix not in {".yaml", ".yml", ".json", ".sh", ".tpl", ".toml", ".py"}:
            continue
        if path.resolve() == node_script.resolve() or not path.is_file():
            continue
        embedded = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
        embedded = [ln for ln in embedded if ln]
        # An embedded copy (e.g. EC2NodeClass userData) starts with the shebang and the marker
        # and must be the file, line for line.
        starts = [
            i
            for i in range(1, len(embedded))
            if embedded[i].startswith(MARKER) and embedded[i - 1] == script_lines[0]
        ]
        for start in starts:
            assert embedded[start - 1 : start - 1 + len(script_lines)] == script_lines, path
            assert DEFAULT_NODE_SCRIPT_PATH in "\n".join(embedded), path
