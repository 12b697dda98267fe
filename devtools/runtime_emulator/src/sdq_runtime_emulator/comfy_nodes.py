"""Node classes of the emulated ComfyUI — sdq runtime EMULATOR (placeholder images only).

Weight-free image nodes do what the real ones do, with Pillow. Model nodes pass names and
text along; ``KSampler`` draws the placeholder pictures (prompt text, seed, latent size) and
``VAEDecode`` hands them on, so a standard txt2img API-format workflow validates and runs.
Node functions are blocking (the executor runs them in a worker thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from sdq_runtime_emulator import comfy_media, render
from sdq_runtime_emulator.comfy_spec import (
    INT_MAX,
    MAX_RESOLUTION,
    InputSpec,
    Latent,
    NodeFailure,
    NodeSpec,
    Result,
    RunContext,
    SaveTarget,
    next_counter,
    output_folder,
)
from sdq_runtime_emulator.comfy_spec import int_opts as _int

__all__ = ["NODES", "STATIC_COMBOS", "InputSpec", "NodeFailure", "NodeSpec", "RunContext"]

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "ddim", "uni_pc"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
UPSCALE_METHODS = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
LATENT_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


# --- node functions ----------------------------------------------------------------------


def _checkpoint_loader(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    name = inputs["ckpt_name"]
    return (name, name, name), None


def _clip_text_encode(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    return (str(inputs["text"]),), None


def _empty_latent(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    return (Latent(inputs["width"], inputs["height"], inputs["batch_size"]),), None


def _ksampler(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    latent: Latent = inputs["latent_image"]
    seed = int(inputs["seed"])
    # An encoded image (img2img) shows under the placeholder, as SD WebUI's img2img does.
    under = [one.image for one in latent.pictures] if latent.encoded else []
    pictures = tuple(
        render.placeholder(
            latent.width,
            latent.height,
            render.Caption(
                str(inputs["positive"]),
                seed + index,
                ctx.next_serial(),
                note=f"model {inputs['model']}",
            ),
            under=under[index % len(under)] if under else None,
        )
        for index in range(latent.batch_size)
    )
    return (Latent(latent.width, latent.height, latent.batch_size, pictures),), None


def _vae_decode(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    latent: Latent = inputs["samples"]
    if latent.pictures:
        return (list(latent.pictures),), None
    pictures = [
        render.placeholder(
            latent.width,
            latent.height,
            render.Caption("(latent never sampled)", 0, ctx.next_serial()),
        )
        for _ in range(latent.batch_size)
    ]
    return (pictures,), None


def _vae_encode(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["pixels"]
    # The VAE works on multiples of 8: ComfyUI crops the pixels down to them.
    first = images[0].image
    width, height = first.width // 8 * 8, first.height // 8 * 8
    left, top = (first.width % 8) // 2, (first.height % 8) // 2
    box = (left, top, left + width, top + height)
    cropped = tuple(render.Picture(one.image.crop(box)) for one in images)
    return (Latent(width, height, len(cropped), cropped, encoded=True),), None


def _latent_upscale(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    latent: Latent = inputs["samples"]
    if "scale_by" in inputs:
        width = round(latent.width * float(inputs["scale_by"]) / 8) * 8
        height = round(latent.height * float(inputs["scale_by"]) / 8) * 8
    else:
        width = inputs["width"] or round(latent.width * inputs["height"] / latent.height / 8) * 8
        height = inputs["height"] or round(latent.height * width / latent.width / 8) * 8
    width, height = max(8, width), max(8, height)
    pictures = tuple(
        render.Picture(one.image.resize((width, height), Image.Resampling.BICUBIC))
        for one in latent.pictures
    )
    return (Latent(width, height, latent.batch_size, pictures, latent.encoded),), None


def _image_scale_by(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["image"]
    method = UPSCALE_METHODS[inputs["upscale_method"]]
    factor = float(inputs["scale_by"])
    return (
        [
            render.Picture(
                one.image.resize(
                    (
                        max(1, round(one.image.width * factor)),
                        max(1, round(one.image.height * factor)),
                    ),
                    method,
                )
            )
            for one in images
        ],
    ), None


def _upscale_model_loader(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    name = str(inputs["model_name"])
    scale = 2 if "2x" in name.lower() else 4
    return ((name, scale),), None


def _image_upscale_with_model(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["image"]
    _name, scale = inputs["upscale_model"]
    return (
        [
            render.Picture(
                one.image.resize(
                    (one.image.width * scale, one.image.height * scale), Image.Resampling.LANCZOS
                )
            )
            for one in images
        ],
    ), None


def _empty_image(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    colour = int(inputs["color"])
    rgb = ((colour >> 16) & 0xFF, (colour >> 8) & 0xFF, colour & 0xFF)
    size = (inputs["width"], inputs["height"])
    return (
        [render.Picture(Image.new("RGB", size, rgb)) for _ in range(inputs["batch_size"])],
    ), None


def _image_batch(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    first: list[render.Picture] = inputs["image1"]
    second: list[render.Picture] = inputs["image2"]
    size = first[0].image.size
    # ComfyUI scales the second batch to the first one's size (bilinear, centre crop).
    fitted = [
        one
        if one.image.size == size
        else render.Picture(ImageOps.fit(one.image, size, Image.Resampling.BILINEAR))
        for one in second
    ]
    return ([*first, *fitted],), None


def _load_image(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    path = resolve_annotated(ctx.data_dir, str(inputs["image"]))
    if path is None or not path.is_file():
        raise NodeFailure("FileNotFoundError", f"Invalid image file: {inputs['image']}")
    raw = path.read_bytes()
    try:
        image = render.open_image(raw)
    except render.BadImageError as error:
        raise NodeFailure("PIL.UnidentifiedImageError", str(error)) from error
    image = ImageOps.exif_transpose(image)
    mask = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 0)
    return ([render.Picture(image.convert("RGB"))], [mask]), None


def _image_invert(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["image"]
    return ([render.Picture(ImageOps.invert(one.image.convert("RGB"))) for one in images],), None


def _image_scale(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["image"]
    method = UPSCALE_METHODS[inputs["upscale_method"]]
    scaled = []
    for one in images:
        width = inputs["width"] or round(one.image.width * inputs["height"] / one.image.height)
        height = inputs["height"] or round(one.image.height * width / one.image.width)
        if inputs["crop"] == "center":
            image = ImageOps.fit(one.image, (width, height), method)
        else:
            image = one.image.resize((max(1, width), max(1, height)), method)
        scaled.append(render.Picture(image))
    return (scaled,), None


def _image_blur(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    images: list[render.Picture] = inputs["image"]
    radius = float(inputs["sigma"]) * int(inputs["blur_radius"]) / 2
    blur = ImageFilter.GaussianBlur(radius)
    return ([render.Picture(one.image.filter(blur)) for one in images],), None


def _save_image(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    target = SaveTarget(ctx.data_dir / "output", "output")
    return (), {"images": save_pictures(inputs["images"], str(inputs["filename_prefix"]), target)}


def _preview_image(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    target = SaveTarget(ctx.data_dir / "temp", "temp")
    return (), {"images": save_pictures(inputs["images"], "ComfyUI_temp_emulator", target)}


def save_pictures(
    pictures: list[render.Picture], prefix: str, target: SaveTarget
) -> list[dict[str, str]]:
    """Write ``{prefix}_{counter:05}_.png`` files the way ComfyUI's SaveImage names them."""
    folder, base, subfolder = output_folder(target, prefix)
    counter = next_counter(folder, base)
    saved = []
    for index, picture in enumerate(pictures):
        name = f"{base}_{counter + index:05}_.png"
        (folder / name).write_bytes(picture.png())
        saved.append({"filename": name, "subfolder": subfolder, "type": target.kind})
    return saved


def resolve_annotated(data_dir: Path, name: str) -> Path | None:
    """Path of a LoadImage name (``sub/x.png``, optionally suffixed `` [input|output|temp]``)."""
    kind = "input"
    for candidate in ("input", "output", "temp"):
        if name.endswith(f" [{candidate}]"):
            name, kind = name[: -len(candidate) - 3], candidate
    root = (data_dir / kind).resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) else None


def input_files(data_dir: Path) -> list[str]:
    """LoadImage's COMBO list: the files at the top of the input folder."""
    root = data_dir / "input"
    return sorted(path.name for path in root.iterdir() if path.is_file()) if root.is_dir() else []


def load_image_problem(data_dir: Path, name: Any) -> str | None:
    """LoadImage's own check: any existing (annotated) input path, subfolders included."""
    path = resolve_annotated(data_dir, str(name))
    return None if path is not None and path.is_file() else f"Invalid image file: {name}"


def _image_input(name: str = "image") -> InputSpec:
    return InputSpec(name, "IMAGE")


NODES: dict[str, NodeSpec] = {
    spec.name: spec
    for spec in (
        NodeSpec(
            "CheckpointLoaderSimple",
            "loaders",
            (InputSpec("ckpt_name", "COMBO"),),
            ("MODEL", "CLIP", "VAE"),
            _checkpoint_loader,
            loads_checkpoint=True,
        ),
        NodeSpec(
            "CLIPTextEncode",
            "conditioning",
            (
                InputSpec("text", "STRING", {"multiline": True, "dynamicPrompts": True}),
                InputSpec("clip", "CLIP"),
            ),
            ("CONDITIONING",),
            _clip_text_encode,
        ),
        NodeSpec(
            "EmptyLatentImage",
            "latent",
            (
                InputSpec("width", "INT", _int(512, 16, MAX_RESOLUTION, 8)),
                InputSpec("height", "INT", _int(512, 16, MAX_RESOLUTION, 8)),
                InputSpec("batch_size", "INT", _int(1, 1, 4096)),
            ),
            ("LATENT",),
            _empty_latent,
        ),
        NodeSpec(
            "KSampler",
            "sampling",
            (
                InputSpec("model", "MODEL"),
                InputSpec("seed", "INT", _int(0, 0, INT_MAX)),
                InputSpec("steps", "INT", _int(20, 1, 10000)),
                InputSpec("cfg", "FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}),
                InputSpec("sampler_name", "COMBO"),
                InputSpec("scheduler", "COMBO"),
                InputSpec("positive", "CONDITIONING"),
                InputSpec("negative", "CONDITIONING"),
                InputSpec("latent_image", "LATENT"),
                InputSpec("denoise", "FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}),
            ),
            ("LATENT",),
            _ksampler,
            sampler=True,
        ),
        NodeSpec(
            "VAEDecode",
            "latent",
            (InputSpec("samples", "LATENT"), InputSpec("vae", "VAE")),
            ("IMAGE",),
            _vae_decode,
        ),
        NodeSpec(
            "VAEEncode",
            "latent",
            (InputSpec("pixels", "IMAGE"), InputSpec("vae", "VAE")),
            ("LATENT",),
            _vae_encode,
        ),
        NodeSpec(
            "LatentUpscale",
            "latent",
            (
                InputSpec("samples", "LATENT"),
                InputSpec("upscale_method", "COMBO"),
                InputSpec("width", "INT", _int(512, 0, MAX_RESOLUTION, 8)),
                InputSpec("height", "INT", _int(512, 0, MAX_RESOLUTION, 8)),
                InputSpec("crop", "COMBO"),
            ),
            ("LATENT",),
            _latent_upscale,
        ),
        NodeSpec(
            "LatentUpscaleBy",
            "latent",
            (
                InputSpec("samples", "LATENT"),
                InputSpec("upscale_method", "COMBO"),
                InputSpec("scale_by", "FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0}),
            ),
            ("LATENT",),
            _latent_upscale,
        ),
        NodeSpec(
            "UpscaleModelLoader",
            "loaders",
            (InputSpec("model_name", "COMBO"),),
            ("UPSCALE_MODEL",),
            _upscale_model_loader,
        ),
        NodeSpec(
            "ImageUpscaleWithModel",
            "image/upscaling",
            (InputSpec("upscale_model", "UPSCALE_MODEL"), _image_input()),
            ("IMAGE",),
            _image_upscale_with_model,
        ),
        NodeSpec(
            "ImageScaleBy",
            "image/upscaling",
            (
                _image_input(),
                InputSpec("upscale_method", "COMBO"),
                InputSpec("scale_by", "FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0}),
            ),
            ("IMAGE",),
            _image_scale_by,
        ),
        NodeSpec(
            "EmptyImage",
            "image",
            (
                InputSpec("width", "INT", _int(512, 1, MAX_RESOLUTION)),
                InputSpec("height", "INT", _int(512, 1, MAX_RESOLUTION)),
                InputSpec("batch_size", "INT", _int(1, 1, 4096)),
                InputSpec("color", "INT", _int(0, 0, 0xFFFFFF) | {"display": "color"}),
            ),
            ("IMAGE",),
            _empty_image,
        ),
        NodeSpec(
            "ImageBatch",
            "image",
            (_image_input("image1"), _image_input("image2")),
            ("IMAGE",),
            _image_batch,
        ),
        NodeSpec(
            "LoadImage",
            "image",
            (InputSpec("image", "COMBO", {"image_upload": True}),),
            ("IMAGE", "MASK"),
            _load_image,
        ),
        NodeSpec("ImageInvert", "image", (_image_input(),), ("IMAGE",), _image_invert),
        NodeSpec(
            "ImageScale",
            "image/upscaling",
            (
                _image_input(),
                InputSpec("upscale_method", "COMBO"),
                InputSpec("width", "INT", _int(512, 0, MAX_RESOLUTION)),
                InputSpec("height", "INT", _int(512, 0, MAX_RESOLUTION)),
                InputSpec("crop", "COMBO"),
            ),
            ("IMAGE",),
            _image_scale,
        ),
        NodeSpec(
            "ImageBlur",
            "image/postprocessing",
            (
                _image_input(),
                InputSpec("blur_radius", "INT", _int(1, 1, 31)),
                InputSpec("sigma", "FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0}),
            ),
            ("IMAGE",),
            _image_blur,
        ),
        NodeSpec(
            "SaveImage",
            "image",
            (
                InputSpec("images", "IMAGE"),
                InputSpec("filename_prefix", "STRING", {"default": "ComfyUI"}),
            ),
            (),
            _save_image,
            output_node=True,
        ),
        NodeSpec(
            "PreviewImage",
            "image",
            (InputSpec("images", "IMAGE"),),
            (),
            _preview_image,
            output_node=True,
        ),
        *comfy_media.MEDIA_NODES,
    )
}

STATIC_COMBOS = {
    "KSampler.sampler_name": SAMPLERS,
    "KSampler.scheduler": SCHEDULERS,
    "ImageScale.upscale_method": list(UPSCALE_METHODS),
    "ImageScale.crop": ["disabled", "center"],
    "ImageScaleBy.upscale_method": list(UPSCALE_METHODS),
    "LatentUpscale.upscale_method": LATENT_UPSCALE_METHODS,
    "LatentUpscale.crop": ["disabled", "center"],
    "LatentUpscaleBy.upscale_method": LATENT_UPSCALE_METHODS,
} | comfy_media.MEDIA_COMBOS
