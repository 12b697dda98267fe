"""Let ``import torchvision`` succeed beside a CPU-only torch wheel.

The registry's torchvision is built against CUDA torch: its compiled ops library does not load
with the CPU wheel, and its fake-tensor registrations then fail because the ``torchvision::nms``
and ``torchvision::qnms`` operators were never declared. ``install()`` adds an import hook that,
the first time anything imports torchvision, declares those two operator schemas (nothing else:
the ops stay unimplemented, and neither runtime calls them on the paths the suite uses).

Runs inside a runtime's own virtual environment: standard library and torch only.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType
from typing import Any

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# The library object must outlive the hook, or torch drops the definitions.
_declared: list[Any] = []


def _declare_missing_ops() -> None:
    import torch  # noqa: PLC0415 - only once torchvision is wanted

    try:
        torch.ops.torchvision.nms  # noqa: B018 - probing whether the op exists
    except (AttributeError, RuntimeError):
        library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            library.define(schema)
        _declared.append(library)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs ``_declare_missing_ops`` once, just before torchvision's first import."""

    fired = False

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> None:
        if fullname == "torchvision" and not self.fired:
            self.fired = True
            _declare_missing_ops()
        # the normal finders import the real package


def install() -> None:
    if not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())
