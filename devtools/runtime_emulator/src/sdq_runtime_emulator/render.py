"""Placeholder pictures of the sdq runtime EMULATOR (no model runs; nothing here is AI output).

Every generated picture is a flat background whose colour comes from the seed, with the
banner (:data:`BANNER`), the prompt, the seed, the size and a
per-server serial number drawn on it, so two requests never give the same pixels.
Rendering and PNG encoding are blocking: callers run them in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import hashlib
import io
import textwrap
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

# ASCII only: the bundled Pillow font has no en dash.
BANNER = "sdq runtime emulator - placeholder image"
PNG_COMPRESS_LEVEL = 1  # a 1024x1024 picture encodes in tens of milliseconds


class BadImageError(ValueError):
    """Input bytes are not a decodable image."""


@dataclass
class Picture:
    """An image plus its PNG encoding once computed (so a save does not encode twice)."""

    image: Image.Image
    _png: bytes | None = field(default=None, repr=False)

    def png(self) -> bytes:
        if self._png is None:
            buffer = io.BytesIO()
            self.image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            self._png = buffer.getvalue()
        return self._png

    def b64(self) -> str:
        return base64.b64encode(self.png()).decode("ascii")


@dataclass(frozen=True)
class Caption:
    """What a placeholder shows."""

    prompt: str
    seed: int
    serial: int
    note: str = ""


def seed_colour(seed: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(str(seed).encode()).digest()
    hue = digest[0] / 255
    saturation = 0.45 + digest[1] / 255 * 0.4
    value = 0.35 + digest[2] / 255 * 0.35
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def placeholder(
    width: int, height: int, caption: Caption, under: Image.Image | None = None
) -> Picture:
    """Draw and PNG-encode one placeholder; ``under`` (an input image) is shown as a thumbnail."""
    image = Image.new("RGB", (width, height), seed_colour(caption.seed * 7919 + caption.serial))
    if under is not None:
        thumbnail = under.convert("RGB")
        thumbnail.thumbnail((max(1, width // 3), max(1, height // 3)))
        image.paste(thumbnail, (width - thumbnail.width, height - thumbnail.height))
    lines = [
        BANNER,
        f"seed {caption.seed}   {width}x{height}   #{caption.serial}",
        *(textwrap.wrap(caption.prompt, width=48)[:6] or ["(empty prompt)"]),
    ]
    if caption.note:
        lines.append(caption.note)
    _draw_lines(image, lines)
    picture = Picture(image)
    picture.png()
    return picture


def label(image: Image.Image, note: str) -> Picture:
    """Stamp the banner on a transformed input image (extras, image nodes) and encode it."""
    labelled = image.convert("RGB")
    _draw_lines(labelled, [BANNER, note])
    picture = Picture(labelled)
    picture.png()
    return picture


def _draw_lines(image: Image.Image, lines: list[str]) -> None:
    size = max(10, min(image.width // 26, image.height // 12))
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    margin = max(4, size // 2)
    y = margin
    for line in lines:
        draw.text(
            (margin, y),
            line,
            font=font,
            fill=(255, 255, 255),
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
        y += int(size * 1.3)


def decode_b64_image(data: str) -> Image.Image:
    """Decode base64 image text, with or without a ``data:image/...;base64,`` prefix."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
        return open_image(raw)
    except (binascii.Error, ValueError) as error:
        raise BadImageError("Invalid encoded image") from error


def open_image(raw: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise BadImageError("not an image") from error
    return image
