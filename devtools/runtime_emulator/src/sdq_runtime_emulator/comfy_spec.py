"""Node-class building blocks of the emulated ComfyUI — sdq runtime EMULATOR.

The specs (inputs, outputs, flags) every emulated node class is described with, the values
passed between nodes, and ComfyUI's file counter for save nodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdq_runtime_emulator import render

MAX_RESOLUTION = 16384
INT_MAX = 0xFFFFFFFFFFFFFFFF
ANY = "*"
"""ComfyUI's any-type: takes a link of any type, or a literal."""


class NodeFailure(Exception):
    """A node raised while executing (reported as ``execution_error``)."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch_size: int
    pictures: tuple[render.Picture, ...] = ()
    encoded: bool = False
    """``pictures`` came from VAEEncode (not sampled yet)."""


@dataclass(frozen=True)
class SaveTarget:
    """Where a save node writes (``folder`` is output or temp under the data dir)."""

    folder: Path
    kind: str


@dataclass
class RunContext:
    """What node functions may touch: the data folders and the server serial counter."""

    data_dir: Path
    next_serial: Callable[[], int]


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str
    """INT, FLOAT, STRING, BOOLEAN, COMBO, or a link type such as IMAGE."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def linked(self) -> bool:
        return self.kind not in {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", ANY}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    category: str
    required: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    run: Callable[[RunContext, dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any] | None]]
    output_node: bool = False
    sampler: bool = False
    """The node where a generation spends its latency (fault injection happens here)."""
    loads_checkpoint: bool = False
    optional: tuple[InputSpec, ...] = ()

    def object_info(self, combos: dict[str, list[str]]) -> dict[str, Any]:
        def describe(spec: InputSpec) -> list[Any]:
            if spec.kind == "COMBO":
                return [combos.get(f"{self.name}.{spec.name}", []), dict(spec.options)]
            return [spec.kind, dict(spec.options)] if spec.options else [spec.kind]

        return {
            "input": {
                "required": {spec.name: describe(spec) for spec in self.required},
                "optional": {spec.name: describe(spec) for spec in self.optional},
            },
            "input_order": {
                "required": [spec.name for spec in self.required],
                "optional": [spec.name for spec in self.optional],
            },
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.outputs),
            "name": self.name,
            "display_name": self.name,
            "description": f"{render.BANNER}: emulated {self.name}",
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        }


def int_opts(default: int, low: int, high: int, step: int = 1) -> dict[str, Any]:
    return {"default": default, "min": low, "max": high, "step": step}


Result = tuple[tuple[Any, ...], dict[str, Any] | None]


def output_folder(target: SaveTarget, prefix: str) -> tuple[Path, str, str]:
    """(folder, base name, subfolder) of a ``filename_prefix``, kept inside the target."""
    subfolder, _, base = prefix.replace("\\", "/").rpartition("/")
    folder = (target.folder / subfolder).resolve()
    if not folder.is_relative_to(target.folder.resolve()):
        raise NodeFailure("Exception", "Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, base, subfolder


def next_counter(folder: Path, base: str) -> int:
    """ComfyUI's save counter: one past the highest ``{base}_{n}_…`` in the folder, whatever
    the file's extension (an animation and an image with one prefix share the sequence)."""
    numbers = [0]
    for name in os.listdir(folder):
        if name[: len(base) + 1] != f"{base}_":
            continue
        digits, underscore, _ = name[len(base) + 1 :].partition("_")
        if underscore and digits.isdigit():
            numbers.append(int(digits))
    return max(numbers) + 1
