"""Node types of the emulated InvokeAI graph — sdq runtime EMULATOR (placeholder images).

Only the invocations sdq's translated graphs use plus a few weight-free image nodes, with the
field names and output fields of InvokeAI 6.14. Values flowing between nodes are small dicts;
"latents" carry what the final placeholder shows (prompt, seed, size, the init image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFilter

from sdq_runtime_emulator import render


class NodeError(Exception):
    """A node failed while executing (InvokeAI records ``error_type`` / ``error_message``)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass
class Context:
    """What a node may touch: the image store and the model manager."""

    get_image: Callable[[str], Image.Image]
    save_image: Callable[[Image.Image, bool], dict[str, Any]]
    model_exists: Callable[[str], bool]
    serial: Callable[[], int]


Run = Callable[[Context, dict[str, Any], bool], dict[str, Any]]


@dataclass(frozen=True)
class NodeType:
    inputs: dict[str, Any]  # field → default (REQUIRED when it must be set or connected)
    outputs: frozenset[str]
    run: Run
    output_type: str = "image_output"
    generation: bool = False  # where the latency knob is spent


REQUIRED = object()
# Fields every invocation has (BaseInvocation).
COMMON = {"id", "type", "is_intermediate", "use_cache"}


def _model_loader(ctx: Context, f: dict[str, Any], _: bool) -> dict[str, Any]:
    model = f["model"]
    if not isinstance(model, dict) or not isinstance(model.get("key"), str):
        raise NodeError("ValidationError", "model: a model identifier with a key is required")
    if not ctx.model_exists(model["key"]):
        raise NodeError("Exception", f"Unknown model {model['key']}")
    return {"unet": {"model": model}, "clip": {"model": model}, "vae": {"model": model}}


def _compel(_: Context, f: dict[str, Any], __: bool) -> dict[str, Any]:
    return {"conditioning": {"prompt": str(f.get("prompt") or "")}}


def _noise(_: Context, f: dict[str, Any], __: bool) -> dict[str, Any]:
    return {
        "noise": {"seed": int(f["seed"]), "width": int(f["width"]), "height": int(f["height"])},
        "width": f["width"],
        "height": f["height"],
    }


def _denoise(_: Context, f: dict[str, Any], __: bool) -> dict[str, Any]:
    noise = f.get("noise") or {}
    source = f.get("latents") or {}
    positive = f.get("positive_conditioning") or {}
    latents = {
        "prompt": positive.get("prompt", ""),
        "seed": noise.get("seed", source.get("seed", 0)),
        "width": noise.get("width", source.get("width", 512)),
        "height": noise.get("height", source.get("height", 512)),
        "under": source.get("image"),
        "note": f"{f.get('scheduler', 'euler')} x{f.get('steps', 10)}",
    }
    return {"latents": latents, "width": latents["width"], "height": latents["height"]}


def _l2i(ctx: Context, f: dict[str, Any], intermediate: bool) -> dict[str, Any]:
    lat = f["latents"]
    under = ctx.get_image(lat["under"]) if lat.get("under") else None
    caption = render.Caption(str(lat["prompt"]), int(lat["seed"]), ctx.serial(), lat["note"])
    picture = render.placeholder(int(lat["width"]), int(lat["height"]), caption, under)
    return ctx.save_image(picture.image, intermediate)


def _i2l(ctx: Context, f: dict[str, Any], _: bool) -> dict[str, Any]:
    name = _image_name(f["image"])
    image = ctx.get_image(name)
    return {
        "latents": {"image": name, "width": image.width, "height": image.height, "seed": 0},
        "width": image.width,
        "height": image.height,
    }


def _blank(ctx: Context, f: dict[str, Any], intermediate: bool) -> dict[str, Any]:
    color = f.get("color") or {}
    rgba = tuple(int(color.get(c, d)) for c, d in (("r", 0), ("g", 0), ("b", 0), ("a", 255)))
    mode = str(f.get("mode") or "RGB")
    image = Image.new(
        mode, (int(f["width"]), int(f["height"])), rgba if mode == "RGBA" else rgba[:3]
    )
    return ctx.save_image(image, intermediate)


def _resize(ctx: Context, f: dict[str, Any], intermediate: bool) -> dict[str, Any]:
    image = ctx.get_image(_image_name(f["image"]))
    return ctx.save_image(image.resize((int(f["width"]), int(f["height"]))), intermediate)


def _blur(ctx: Context, f: dict[str, Any], intermediate: bool) -> dict[str, Any]:
    image = ctx.get_image(_image_name(f["image"]))
    blurred = image.filter(ImageFilter.GaussianBlur(float(f.get("radius") or 0)))
    return ctx.save_image(blurred, intermediate)


def _image_name(value: Any) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("image_name"), str):
        raise NodeError("ValidationError", "image: an image field {image_name} is required")
    return str(value["image_name"])


IMAGE_OUT = frozenset({"image", "width", "height"})
# The value type of each connectable field (an edge joins fields of one type).
FIELD_KINDS = {
    "image": "ImageField",
    "latents": "LatentsField",
    "noise": "LatentsField",
    "conditioning": "ConditioningField",
    "positive_conditioning": "ConditioningField",
    "negative_conditioning": "ConditioningField",
    "unet": "UNetField",
    "clip": "CLIPField",
    "vae": "VAEField",
    "width": "int",
    "height": "int",
    "seed": "int",
    "steps": "int",
    "radius": "float",
    "prompt": "str",
}
_METADATA = {"metadata": None, "board": None}

NODE_TYPES: dict[str, NodeType] = {
    "main_model_loader": NodeType(
        {"model": REQUIRED},
        frozenset({"unet", "clip", "vae"}),
        _model_loader,
        "model_loader_output",
    ),
    "compel": NodeType(
        {"prompt": "", "clip": REQUIRED, "mask": None},
        frozenset({"conditioning"}),
        _compel,
        "conditioning_output",
    ),
    "noise": NodeType(
        {"noise_type": "SD", "seed": 0, "width": 512, "height": 512, "use_cpu": True},
        frozenset({"noise", "width", "height"}),
        _noise,
        "noise_output",
    ),
    "denoise_latents": NodeType(
        {
            "positive_conditioning": REQUIRED,
            "negative_conditioning": REQUIRED,
            "noise": None,
            "steps": 10,
            "cfg_scale": 7.5,
            "denoising_start": 0.0,
            "denoising_end": 1.0,
            "scheduler": "euler",
            "unet": REQUIRED,
            "latents": None,
            "denoise_mask": None,
            "cfg_rescale_multiplier": 0,
        },
        frozenset({"latents", "width", "height"}),
        _denoise,
        "latents_output",
        generation=True,
    ),
    "l2i": NodeType(
        {
            "latents": REQUIRED,
            "vae": REQUIRED,
            "tiled": False,
            "tile_size": 0,
            "fp32": False,
            **_METADATA,
        },
        IMAGE_OUT,
        _l2i,
    ),
    "i2l": NodeType(
        {"image": REQUIRED, "vae": REQUIRED, "tiled": False, "tile_size": 0, "fp32": False},
        frozenset({"latents", "width", "height"}),
        _i2l,
        "latents_output",
    ),
    "blank_image": NodeType(
        {
            "width": 512,
            "height": 512,
            "mode": "RGB",
            "color": {"r": 0, "g": 0, "b": 0, "a": 255},
            **_METADATA,
        },
        IMAGE_OUT,
        _blank,
    ),
    "img_resize": NodeType(
        {"image": REQUIRED, "width": 512, "height": 512, "resample_mode": "bicubic", **_METADATA},
        IMAGE_OUT,
        _resize,
    ),
    "img_blur": NodeType(
        {"image": REQUIRED, "radius": 8.0, "blur_type": "gaussian", **_METADATA}, IMAGE_OUT, _blur
    ),
}
