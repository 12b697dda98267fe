"""The task's image format choice (``task.output``): still images stored as PNG, JPEG or WebP
(pure, CPU-bound: the upload stage runs it in a thread, beside the next generation).

Only still raster images are converted; animations (animated WebP/PNG/GIF), video, audio, text
and other files are kept as the runtime made them. An image already in the asked format is
kept byte for byte unless a quality was asked. A conversion drops what the source embedded
(ComfyUI writes its workflow into PNG text chunks; the task's ``.out`` object keeps the history).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from sdq_contracts.requests import ImageFormat, OutputOptions
from sdq_queue_agent.domain.output_media import RASTER, ImageHeader, bare, image_header
from sdq_queue_agent.errors import OutputConversionError

# Encoder quality when the task names a lossy format without one.
DEFAULT_QUALITY = 90
_PIL_FORMAT = {ImageFormat.PNG: "PNG", ImageFormat.JPEG: "JPEG", ImageFormat.WEBP: "WEBP"}
_STORED = {
    ImageFormat.PNG: ("image/png", "png"),
    ImageFormat.JPEG: ("image/jpeg", "jpg"),
    ImageFormat.WEBP: ("image/webp", "webp"),
}


@dataclass(frozen=True)
class Stored:
    data: bytes
    content_type: str
    ext: str
    width: int | None
    height: int | None
    animated: bool


def wants_conversion(options: OutputOptions | None, content_type: str) -> bool:
    """Whether the output may need converting (the bytes decide: an animation is kept)."""
    return options is not None and bare(content_type) in RASTER


def convert(data: bytes, content_type: str, ext: str, options: OutputOptions) -> Stored:
    """The image as the task asked it stored; raises OutputConversionError (permanent) when the
    runtime's image cannot be decoded or encoded."""
    header = image_header(data)
    if header is None:
        raise OutputConversionError(
            f"cannot convert an output to {options.format.value}: "
            f"the runtime's {content_type} is not a readable image"
        )
    if header.animated:  # kept as made
        return Stored(data, content_type, ext, header.width, header.height, True)
    target_type, target_ext = _STORED[options.format]
    if header.format == _PIL_FORMAT[options.format] and options.quality is None:
        return Stored(data, target_type, ext, header.width, header.height, False)
    encoded = _encode(data, header, options)
    return Stored(encoded, target_type, target_ext, header.width, header.height, False)


def _encode(data: bytes, header: ImageHeader, options: OutputOptions) -> bytes:
    target = _PIL_FORMAT[options.format]
    out = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # A huge image is refused below (DecompressionBombError), never half-converted.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                picture = _flatten(im) if target == "JPEG" else _keep_alpha(im)
                if target == "PNG":
                    picture.save(out, "PNG")
                else:
                    quality = options.quality or DEFAULT_QUALITY
                    picture.save(out, target, quality=quality)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise OutputConversionError(
            f"cannot convert a {header.width}x{header.height} {header.format} output to "
            f"{options.format.value}: {type(exc).__name__}: {exc}"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise OutputConversionError(
            f"cannot convert a {header.width}x{header.height} output to {options.format.value}: "
            f"larger than {Image.MAX_IMAGE_PIXELS} pixels"
        ) from None
    return out.getvalue()


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _flatten(im: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparent pixels become white."""
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def _keep_alpha(im: Image.Image) -> Image.Image:
    if _has_alpha(im):
        return im if im.mode == "RGBA" else im.convert("RGBA")
    return im if im.mode in ("RGB", "L") else im.convert("RGB")
