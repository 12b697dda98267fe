"""Start a real runtime from its source tree under a CPU-only torch (run with the runtime's venv).

    <venv>/bin/python run_runtime.py <source tree> <entry script> [runtime args...]

Installs the torchvision compatibility hook, makes the tree the working directory and the first
import path (both runtimes expect that), then executes the entry script (ComfyUI ``main.py``,
SD WebUI ``launch.py``) as ``__main__`` with the remaining arguments.
"""

from __future__ import annotations

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tv_compat


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: run_runtime.py <source tree> <entry script> [args...]")
    tree, entry, args = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    tv_compat.install()
    os.chdir(tree)
    sys.path.insert(0, tree)
    script = os.path.join(tree, entry)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
