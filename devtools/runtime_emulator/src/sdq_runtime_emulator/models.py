"""Checkpoint catalogue of the sdq runtime EMULATOR (no weights are ever read).

Known checkpoints are a built-in list plus the model files found under the ``models_dir``
knob: ``Stable-diffusion/**`` (SD WebUI layout) and ``checkpoints/**`` (ComfyUI layout).
SD WebUI sees a snapshot that only ``refresh-checkpoints`` renews (as the real server does);
ComfyUI rescans on every ``object_info`` and validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

BUILTIN_CHECKPOINTS = (
    "v1-5-pruned-emaonly.safetensors",
    "sd_xl_base_1.0.safetensors",
)
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
SUBDIRS = ("Stable-diffusion", "checkpoints")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint as SD WebUI lists it (``name`` is the path relative to its folder)."""

    name: str
    filename: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def model_name(self) -> str:
        return Path(self.name).with_suffix("").as_posix().replace("/", "_")

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]"

    def aliases(self) -> set[str]:
        return {
            self.name,
            self.title,
            self.model_name,
            self.short_hash,
            self.sha256,
            Path(self.name).name,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.short_hash,
            "sha256": self.sha256,
            "filename": self.filename,
            "config": None,
        }


def scan(models_dir: str | None) -> list[Checkpoint]:
    """Built-in checkpoints, then model files under ``models_dir`` (sorted, de-duplicated)."""
    found = {name: Checkpoint(name, f"/emulator/builtin/{name}") for name in BUILTIN_CHECKPOINTS}
    if models_dir is not None:
        for subdir in SUBDIRS:
            root = Path(models_dir) / subdir
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix in MODEL_SUFFIXES:
                    name = path.relative_to(root).as_posix()
                    found.setdefault(name, Checkpoint(name, str(path)))
    return list(found.values())


def find(checkpoints: list[Checkpoint], wanted: str) -> Checkpoint | None:
    for checkpoint in checkpoints:
        if wanted in checkpoint.aliases():
            return checkpoint
    return None


UPSCALE_SUBDIRS = ("upscale_models", "ESRGAN", "RealESRGAN")
UPSCALE_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")


def upscale_models(models_dir: str | None) -> list[str]:
    """Upscale model files (ComfyUI ``upscale_models``; SD WebUI keeps them in ``ESRGAN``)."""
    if models_dir is None:
        return []
    names: set[str] = set()
    for subdir in UPSCALE_SUBDIRS:
        root = Path(models_dir) / subdir
        if root.is_dir():
            names.update(
                path.relative_to(root).as_posix()
                for path in root.rglob("*")
                if path.is_file() and path.suffix in UPSCALE_SUFFIXES
            )
    return sorted(names)
