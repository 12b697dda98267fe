"""Output and input file types."""

from __future__ import annotations

import mimetypes

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)
_EXT_BY_TYPE = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "application/json": "json",
}


def sniff(data: bytes) -> tuple[str, str]:
    """``(content type, extension)`` of image bytes by magic number (PNG when unknown)."""
    for magic, content_type, ext in _MAGIC:
        if data.startswith(magic):
            return content_type, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return "image/png", "png"


def by_filename(filename: str, header_type: str | None = None) -> tuple[str, str]:
    """Content type and extension of a runtime output file (``/view``)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    guessed, _ = mimetypes.guess_type(filename)
    content_type = guessed or (header_type or "application/octet-stream").split(";")[0].strip()
    return content_type, ext or _EXT_BY_TYPE.get(content_type, "bin")


def ext_for(content_type: str) -> str:
    return _EXT_BY_TYPE.get(content_type.split(";", maxsplit=1)[0].strip().lower(), "bin")


def is_image_type(content_type: str) -> bool:
    return content_type.split(";", maxsplit=1)[0].strip().lower().startswith("image/")
