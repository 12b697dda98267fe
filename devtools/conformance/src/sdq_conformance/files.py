"""What a finished task's outputs really are, checked against what sdq says of them.

For each output the status row lists (``outputs`` and ``files``), the object is read back from
S3 and decoded (Pillow for images and animations, PyAV for video and audio, UTF-8 for text);
its size, S3 content type, key extension, dimensions and kind must match the row's metadata, and
the notification must carry the same metadata. Disagreements are returned as problems (the test
asserts there are none); the facts are what the case table compares.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import av
from PIL import Image, UnidentifiedImageError

from sdq_contracts.keys import parse_s3_uri
from sdq_contracts.messages import OutputObject

# Key extensions a content type may be stored under.
EXTENSIONS: dict[str, frozenset[str]] = {
    "image/png": frozenset({"png"}),
    "image/jpeg": frozenset({"jpg", "jpeg"}),
    "image/webp": frozenset({"webp"}),
    "image/gif": frozenset({"gif"}),
    "video/mp4": frozenset({"mp4"}),
    "video/webm": frozenset({"webm"}),
    "audio/flac": frozenset({"flac"}),
    "text/plain": frozenset({"txt"}),
    "application/json": frozenset({"json"}),
}
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}


class FileFacts(NamedTuple):
    """One output as the table compares it: kind, bare content type, pixels (or None)."""

    kind: str
    content_type: str
    width: int | None = None
    height: int | None = None

    def short(self) -> str:
        size = f" {self.width}x{self.height}" if self.width is not None else ""
        return f"{self.kind}:{self.content_type}{size}"


@dataclass(frozen=True)
class Measured:
    """What the stored bytes are, read by a decoder."""

    kind: str  # image | animation | video | audio | text | unknown
    width: int | None = None
    height: int | None = None
    text: str | None = None
    problem: str = ""


@dataclass(frozen=True)
class Checked:
    facts: tuple[FileFacts, ...]
    problems: tuple[str, ...]
    # Pixel sizes of the still images (the table's ``images``), in output order.
    images: tuple[tuple[int, int], ...]
    # The contents of the text outputs, in output order.
    texts: tuple[str, ...]


def bare(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def measure(data: bytes, content_type: str) -> Measured:
    """Decode ``data`` as what ``content_type`` says it is."""
    main = bare(content_type)
    if main.startswith("image/"):
        return _measure_image(data, main)
    if main.startswith(("video/", "audio/")):
        return _measure_av(data, main)
    if main.startswith("text/") or main == "application/json":
        try:
            return Measured("text", text=data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return Measured("unknown", problem=f"text that is not UTF-8: {exc}")
    return Measured("unknown", problem=f"no decoder for {content_type}")


def _measure_image(data: bytes, main: str) -> Measured:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            frames = int(getattr(image, "n_frames", 1))
            kind = "animation" if frames > 1 else "image"
            problem = ""
            if PIL_FORMATS.get(main, image.format) != image.format:
                problem = f"stored as {main} but the bytes are {image.format}"
            return Measured(kind, image.width, image.height, problem=problem)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return Measured("unknown", problem=f"{main} that Pillow cannot read: {exc}")


def _measure_av(data: bytes, main: str) -> Measured:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if main.startswith("video/"):
                stream = container.streams.video[0]
                decoded = len(list(container.decode(stream)))
                if decoded == 0:
                    return Measured("video", problem="a video without a decodable frame")
                return Measured("video", stream.codec_context.width, stream.codec_context.height)
            audio = container.streams.audio[0]
            samples = sum(int(frame.samples) for frame in container.decode(audio))
            return Measured("audio", problem="" if samples else "audio without samples")
    except (av.FFmpegError, IndexError) as exc:
        return Measured("unknown", problem=f"{main} that PyAV cannot read: {exc}")


def check(
    record: Mapping[str, Any],
    notified: Sequence[OutputObject] | None,
    read: Callable[[str], tuple[bytes, str]],
) -> Checked:
    """Check a completed task's outputs. ``read(uri)`` gives an object's bytes and S3 type."""
    outputs = list(record.get("outputs") or [])
    files = [OutputObject.model_validate(f) for f in record.get("files") or []]
    problems: list[str] = []
    if [f.url for f in files] != outputs:
        problems.append(f"status row: files {[f.url for f in files]} are not outputs {outputs}")
    if notified is None:
        problems.append("no completed notification to compare the files with")
    elif [_meta(f) for f in notified] != [_meta(f) for f in files]:
        problems.append(
            f"notification files {[_meta(f) for f in notified]} differ from the status row's "
            f"{[_meta(f) for f in files]}"
        )
    described = {f.url: f for f in files}
    facts, images, texts = [], [], []
    for url in outputs:
        data, s3_type = read(url)
        output = described.get(url)
        measured = measure(data, output.content_type if output else s3_type)
        if output is not None:
            problems += _problems(output, data, s3_type, measured)
            facts.append(
                FileFacts(output.kind.value, bare(output.content_type), output.width, output.height)
            )
        if measured.kind == "image" and measured.width and measured.height:
            images.append((measured.width, measured.height))
        if measured.text is not None:
            texts.append(measured.text)
    return Checked(tuple(facts), tuple(problems), tuple(images), tuple(texts))


def _meta(f: OutputObject) -> tuple[Any, ...]:
    return (f.url, f.kind.value, f.content_type, f.bytes, f.width, f.height)


def _problems(output: OutputObject, data: bytes, s3_type: str, measured: Measured) -> list[str]:
    where = output.url.rsplit("/", 1)[-1]
    found = [f"{where}: {measured.problem}"] if measured.problem else []
    if output.bytes <= 0 or output.bytes != len(data):
        found.append(f"{where}: bytes {output.bytes}, the S3 object has {len(data)}")
    if bare(s3_type) != bare(output.content_type):
        found.append(f"{where}: S3 content type {s3_type!r}, files say {output.content_type!r}")
    _bucket, key = parse_s3_uri(output.url)
    extension = key.rsplit(".", 1)[-1].lower()
    allowed = EXTENSIONS.get(bare(output.content_type))
    if allowed is not None and extension not in allowed:
        found.append(f"{where}: extension .{extension} for {output.content_type}")
    if measured.kind not in ("unknown", output.kind.value):
        found.append(f"{where}: files say {output.kind.value}, the bytes are {measured.kind}")
    if measured.width is not None and (measured.width, measured.height) != (
        output.width,
        output.height,
    ):
        found.append(
            f"{where}: files say {output.width}x{output.height}, "
            f"the bytes are {measured.width}x{measured.height}"
        )
    return found
