"""Download links of task outputs: every ``s3://`` output URI described as an
:class:`~sdq_contracts.messages.OutputObject`, then given a short-lived pre-signed HTTPS GET link.

The agent (in the notification) and the API (in each status answer) sign; the status row never
holds a link. Rows and notifications written before outputs carried metadata list only URIs: an
output without a ``files`` entry is described from its extension, so it gets a link too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from sdq_contracts.messages import OutputKind, OutputObject

# Extension → (kind, content type) of what runtimes save. Anything else is an opaque download.
_BY_EXTENSION: dict[str, tuple[OutputKind, str]] = {
    "png": (OutputKind.IMAGE, "image/png"),
    "jpg": (OutputKind.IMAGE, "image/jpeg"),
    "jpeg": (OutputKind.IMAGE, "image/jpeg"),
    "webp": (OutputKind.IMAGE, "image/webp"),
    "gif": (OutputKind.ANIMATION, "image/gif"),
    "apng": (OutputKind.ANIMATION, "image/apng"),
    "mp4": (OutputKind.VIDEO, "video/mp4"),
    "webm": (OutputKind.VIDEO, "video/webm"),
    "mov": (OutputKind.VIDEO, "video/quicktime"),
    "wav": (OutputKind.AUDIO, "audio/wav"),
    "mp3": (OutputKind.AUDIO, "audio/mpeg"),
    "flac": (OutputKind.AUDIO, "audio/flac"),
    "ogg": (OutputKind.AUDIO, "audio/ogg"),
    "txt": (OutputKind.TEXT, "text/plain"),
    "json": (OutputKind.TEXT, "application/json"),
}
_UNKNOWN = (OutputKind.TEXT, "application/octet-stream")


def describe_uri(uri: str) -> OutputObject:
    """An output known only by its URI: kind and content type from its extension, size unknown
    (``bytes`` 0). Still images cannot be told from animated WebP/PNG this way: ``image``."""
    ext = PurePosixPath(uri).suffix.lstrip(".").lower()
    kind, content_type = _BY_EXTENSION.get(ext, _UNKNOWN)
    return OutputObject(url=uri, kind=kind, content_type=content_type, bytes=0)


def output_files(urls: Sequence[str], files: Sequence[OutputObject]) -> list[OutputObject]:
    """One OutputObject per output URI, in the URIs' order: the ``files`` entry of that URI when
    there is one, else one described from the URI. Links already present are dropped."""
    known = {f.url: f for f in files}
    listed = set(urls)
    ordered = list(urls) + [f.url for f in files if f.url not in listed]
    return [without_link(known[u]) if u in known else describe_uri(u) for u in ordered]


def without_link(file: OutputObject) -> OutputObject:
    """What may be stored or logged: the object without its download link."""
    if file.download_url is None and file.download_expires_at is None:
        return file
    return file.model_copy(update={"download_url": None, "download_expires_at": None})


def with_link(file: OutputObject, link: str, signed_at: datetime, seconds: int) -> OutputObject:
    """The object with its pre-signed link, valid ``seconds`` from ``signed_at`` (at most: the
    link also dies with the signing credentials, see ``DownloadsConfig``)."""
    return file.model_copy(
        update={
            "download_url": link,
            "download_expires_at": signed_at + timedelta(seconds=seconds),
        }
    )
