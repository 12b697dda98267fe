"""Start the real InvokeAI (``invokeai-web``) under a CPU-only torch; run with InvokeAI's venv.

    <venv>/bin/python run_invokeai.py --root=DIR

The registry's torchvision wheel is a CUDA build: with the CPU torch its compiled ops do not
load and ``import torchvision`` fails while registering fake kernels for ``torchvision::nms``.
Declaring that op's schema (and ``qnms``) before torchvision is first imported lets the import
succeed; InvokeAI never calls those ops on the paths sdq tests. Then InvokeAI's own entry point
runs with the remaining arguments.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.library: Any = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision" and self.library is None:
            import torch

            try:
                torch.ops.torchvision.nms  # noqa: B018 - probes whether the op exists
            except (AttributeError, RuntimeError):
                self.library = torch.library.Library("torchvision", "DEF")
                for op in ("nms", "qnms"):
                    self.library.define(
                        f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
                    )
            else:
                self.library = False
        return None


def main() -> int:
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
    from invokeai.app.run_app import run_app

    sys.argv = ["invokeai-web", *sys.argv[1:]]
    run_app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
