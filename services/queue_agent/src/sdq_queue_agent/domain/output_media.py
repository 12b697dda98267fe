"""What an output is (pure): its content type and extension from a runtime's file name, its kind,
and its pixel size read from the bytes as they stream by.

Images and animations are measured by Pillow from their header; MP4/MOV by a top-level box scan
(only the ``moov`` box is kept, wherever it sits: ComfyUI's PyAV writes it after ``mdat``); WebM
and Matroska by an EBML scan of the head up to the first cluster. Nothing here holds a whole
large file: a probe keeps at most :data:`HEAD_BYTES` of the head (and an MP4's ``moov``, at most
:data:`MAX_MOOV_BYTES`).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from sdq_contracts.messages import OutputKind

# Extension → content type of the files runtimes save (explicit: ``mimetypes`` answers differ
# between systems' /etc/mime.types).
CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "svg": "image/svg+xml",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # PyAV's "opus" format is an Ogg container
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "obj": "model/obj",
    "stl": "model/stl",
}
TEXT_PLAIN = CONTENT_TYPES["txt"]
JSON = CONTENT_TYPES["json"]
OCTET_STREAM = "application/octet-stream"
# Raster formats Pillow reads (and can convert); the other image types are kept as made.
RASTER = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff"}
)
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,10}$")
# Head kept for image and Matroska headers: Pillow needs JPEG's SOF (after EXIF/ICC segments)
# and PNG's acTL (before the first IDAT); Matroska's Tracks precede the first cluster.
HEAD_BYTES = 4 * 1024 * 1024
MAX_MOOV_BYTES = 64 * 1024 * 1024


def by_filename(filename: str) -> tuple[str, str]:
    """``(content type, extension)`` of a saved file from its name; an unknown extension is kept
    (when it is plain) with ``application/octet-stream``."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext in CONTENT_TYPES:
        return CONTENT_TYPES[ext], ext
    return OCTET_STREAM, ext if _SAFE_EXT.match(ext) else "bin"


def bare(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def kind_of(content_type: str, *, animated: bool = False) -> OutputKind:
    main = bare(content_type)
    if main.startswith("image/"):
        return OutputKind.ANIMATION if animated else OutputKind.IMAGE
    if main.startswith("video/"):
        return OutputKind.VIDEO
    if main.startswith("audio/"):
        return OutputKind.AUDIO
    if main.startswith("text/") or main == JSON:
        return OutputKind.TEXT
    if main.startswith("model/"):
        return OutputKind.MODEL_3D
    return OutputKind.OTHER


@dataclass(frozen=True)
class MediaInfo:
    kind: OutputKind
    bytes: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    animated: bool
    format: str  # Pillow's name: PNG, JPEG, WEBP, GIF, ...


def image_header(data: bytes) -> ImageHeader | None:
    """Pixel size and animation of image bytes (a whole file or its head); None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                animated = bool(getattr(im, "is_animated", False))
                return ImageHeader(im.width, im.height, animated, str(im.format or ""))
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError):
        return _webp_header(data)


def _webp_header(data: bytes) -> ImageHeader | None:
    """A WebP head Pillow cannot open truncated: the RIFF ``VP8X`` chunk has the canvas size and
    the animation flag."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP" or data[12:16] != b"VP8X":
        return None
    flags = data[20]
    width = 1 + int.from_bytes(data[24:27], "little")
    height = 1 + int.from_bytes(data[27:30], "little")
    return ImageHeader(width, height, bool(flags & 0x02), "WEBP")


def describe(data: bytes, content_type: str) -> MediaInfo:
    """Kind, size and dimensions of an output held in memory."""
    probe = Probe(content_type)
    probe.feed(data)
    return probe.finish()


class Probe:
    """Fed every chunk of one output as it streams to S3; :meth:`finish` says what it was."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.size = 0
        main = bare(content_type)
        self._head: bytearray | None = None
        self._mp4: _Mp4Scan | None = None
        if main.startswith("image/") or main in ("video/webm", "video/x-matroska"):
            self._head = bytearray()
        elif main in ("video/mp4", "video/quicktime"):
            self._mp4 = _Mp4Scan()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._head is not None and len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        if self._mp4 is not None:
            self._mp4.feed(chunk)

    def finish(self) -> MediaInfo:
        main = bare(self.content_type)
        width = height = None
        animated = False
        if self._head is not None and main.startswith("image/"):
            header = image_header(bytes(self._head))
            if header is not None:
                width, height, animated = header.width, header.height, header.animated
        elif self._head is not None:
            width, height = _matroska_size(bytes(self._head)) or (None, None)
        elif self._mp4 is not None:
            width, height = self._mp4.size() or (None, None)
        return MediaInfo(kind_of(self.content_type, animated=animated), self.size, width, height)


# ----------------------------------------------------------------------------- MP4 / MOV


class _Mp4Scan:
    """Top-level ISO-BMFF boxes as they stream: every box is skipped by its size except ``moov``,
    which is kept (up to :data:`MAX_MOOV_BYTES`) and read for the first video track's size."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0
        self._moov: bytearray | None = None
        self._moov_left = 0
        self._done = False
        self._size: tuple[int, int] | None = None

    def size(self) -> tuple[int, int] | None:
        return self._size

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and not self._done:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
            elif self._moov is not None:
                step = min(self._moov_left, len(view))
                self._moov += view[:step]
                self._moov_left -= step
                view = view[step:]
                if not self._moov_left:
                    self._size = _moov_size(bytes(self._moov))
                    self._done = True
            else:
                view = self._read_header(view)

    def _read_header(self, view: memoryview) -> memoryview:
        need = 16 if len(self._header) >= 8 and self._box_size32() == 1 else 8
        step = min(need - len(self._header), len(view))
        self._header += view[:step]
        view = view[step:]
        if len(self._header) < 8 or (self._box_size32() == 1 and len(self._header) < 16):
            return view
        size32 = self._box_size32()
        kind = bytes(self._header[4:8])
        header_len = 16 if size32 == 1 else 8
        size = struct.unpack(">Q", self._header[8:16])[0] if size32 == 1 else size32
        self._header.clear()
        if size == 0 or size < header_len:  # "to the end of the file", or broken: stop here
            self._done = True
        elif kind == b"moov":
            if size - header_len > MAX_MOOV_BYTES:
                self._done = True
            else:
                self._moov = bytearray()
                self._moov_left = size - header_len
                if not self._moov_left:
                    self._done = True
        else:
            self._skip = size - header_len
        return view

    def _box_size32(self) -> int:
        return int(struct.unpack(">I", self._header[:4])[0])


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The child boxes ``(type, payload)`` of a container's payload."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            break
        out.append((kind, data[pos + header : pos + size]))
        pos += size
    return out


def _moov_size(moov: bytes) -> tuple[int, int] | None:
    """Width and height of the first video track (``tkhd`` ends with 16.16 fixed width, height;
    a track whose ``hdlr`` is not ``vide`` is skipped)."""
    for kind, trak in _boxes(moov):
        if kind != b"trak":
            continue
        children = dict(_boxes(trak))
        handler = dict(_boxes(children.get(b"mdia", b""))).get(b"hdlr", b"")
        if len(handler) >= 12 and handler[8:12] != b"vide":
            continue
        tkhd = children.get(b"tkhd", b"")
        if len(tkhd) < 8:
            continue
        width, height = struct.unpack(">II", tkhd[-8:])
        if width >> 16 and height >> 16:
            return width >> 16, height >> 16
    return None


# ----------------------------------------------------------------------------- WebM / Matroska

_EBML_SEGMENT = 0x18538067
_EBML_TRACKS = 0x1654AE6B
_EBML_TRACK_ENTRY = 0xAE
_EBML_VIDEO = 0xE0
_EBML_CLUSTER = 0x1F43B675
_EBML_PIXEL_WIDTH = 0xB0
_EBML_PIXEL_HEIGHT = 0xBA
_EBML_DESCEND = frozenset({_EBML_SEGMENT, _EBML_TRACKS, _EBML_TRACK_ENTRY, _EBML_VIDEO})


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer at ``pos``: (value, next position, all value bits set)."""
    if pos >= len(data) or data[pos] == 0:
        return None
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if pos + length > len(data):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, unknown


def _matroska_size(head: bytes) -> tuple[int, int] | None:
    """PixelWidth/PixelHeight of the first video track, read from the head up to the first
    cluster (masters on the way are entered, everything else skipped by its size)."""
    pos = 0
    width = height = None
    while pos < len(head):
        element = _vint(head, pos, keep_marker=True)
        if element is None:
            return None
        ident, pos, _ = element
        size = _vint(head, pos, keep_marker=False)
        if size is None:
            return None
        length, pos, unknown = size
        if ident == _EBML_CLUSTER:
            break
        if ident in _EBML_DESCEND:
            continue
        if unknown:
            return None
        if ident in (_EBML_PIXEL_WIDTH, _EBML_PIXEL_HEIGHT) and pos + length <= len(head):
            value = int.from_bytes(head[pos : pos + length], "big")
            if ident == _EBML_PIXEL_WIDTH and width is None:
                width = value
            elif ident == _EBML_PIXEL_HEIGHT and height is None:
                height = value
            if width is not None and height is not None:
                return width, height
        pos += length
    return None
