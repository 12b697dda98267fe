"""Where the node sync script lives in a source checkout (tests and the local stack run it).

The script is the single source for both node paths: the EC2NodeClass boot user data inlines
this file, and the SSM command runs it from ``Settings.node_script_path`` on the node. The
Lambda package never needs the file itself, only that path.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT_NAME = "sdq-model-sync.sh"
# services/model_sync/src/sdq_model_sync/node_script.py → services/model_sync/node/
SCRIPT_PATH = Path(__file__).resolve().parents[2] / "node" / SCRIPT_NAME


def node_script_path() -> Path:
    if not SCRIPT_PATH.is_file():
        raise FileNotFoundError(
            f"{SCRIPT_NAME} not found at {SCRIPT_PATH} (not a source checkout?)"
        )
    return SCRIPT_PATH
