"""Inputs given by URL: which fields may hold one, and what a value in such a field means.

Only explicit image fields are looked at (``init_images``, ``mask``, ``image``,
``imageList[].data``, v1alpha1 ``image_link`` after mapping, ComfyUI ``LoadImage.image``).
A string anywhere else that happens to start with ``http`` is passed through untouched.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sdq_contracts.keys import parse_s3_uri
from sdq_queue_agent.domain.model import InputRef, JsonPath
from sdq_queue_agent.errors import InputRefusedError

InputKind = Literal["http", "s3", "data", "inline"]
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DATA_URI = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.S
)


def classify(value: str) -> InputKind:
    """``http``/``s3`` for a URL to fetch, ``data`` for a data: URI, ``inline`` for plain
    (base64) data; other URL schemes are refused."""
    match = _SCHEME.match(value)
    if match is None:
        return "inline"
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "s3":
        return "s3"
    if scheme == "data":
        return "data"
    if value[match.end() :].startswith("//") or scheme in ("file", "gopher", "ftp", "dict", "ldap"):
        raise InputRefusedError(
            f"input URL scheme {scheme!r} is not allowed (http, https, s3 only)"
        )
    return "inline"


def check_s3_input(url: str, buckets: Iterable[str]) -> tuple[str, str]:
    try:
        bucket, key = parse_s3_uri(url)
    except ValueError as exc:
        raise InputRefusedError(str(exc)) from None
    if bucket not in set(buckets):
        raise InputRefusedError(
            f"s3 inputs may come only from the output or model bucket, not {bucket!r}"
        )
    return bucket, key


def decode_data_uri(value: str, max_bytes: int) -> tuple[bytes, str]:
    """The image inside a ``data:image/...;base64,...`` URI, within the byte cap."""
    match = _DATA_URI.match(value)
    if match is None:
        raise InputRefusedError(
            "a data: input must be a base64 data URI (data:image/png;base64,...)"
        )
    content_type = (match.group("type") or "").lower()
    if not content_type.startswith("image/"):
        raise InputRefusedError(
            f"a data: input must hold an image, not {content_type or 'unknown data'!r}"
        )
    payload = match.group("data")
    if len(payload) * 3 // 4 > max_bytes:
        raise InputRefusedError(f"a data: input is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True), content_type
    except (binascii.Error, ValueError):
        raise InputRefusedError("a data: input is not valid base64") from None


def _ref(path: JsonPath, value: Any, *, kinds: frozenset[InputKind]) -> list[InputRef]:
    if isinstance(value, str) and classify(value) in kinds:
        return [InputRef(path, value)]
    return []


# SD WebUI decodes base64 and data: URIs itself; only URLs are fetched for it.
_SDWEBUI_FETCHED: frozenset[InputKind] = frozenset({"http", "s3"})
# ComfyUI's LoadImage names a file on the server: URLs and data: URIs are uploaded to it.
_COMFYUI_FETCHED: frozenset[InputKind] = frozenset({"http", "s3", "data"})


def sdwebui_input_refs(body: Mapping[str, Any]) -> list[InputRef]:
    """URL inputs of an SD WebUI body (every task type's explicit image fields)."""
    refs: list[InputRef] = []
    init_images = body.get("init_images")
    if isinstance(init_images, list):
        for i, value in enumerate(init_images):
            refs += _ref(("init_images", i), value, kinds=_SDWEBUI_FETCHED)
    refs += _ref(("mask",), body.get("mask"), kinds=_SDWEBUI_FETCHED)
    refs += _ref(("image",), body.get("image"), kinds=_SDWEBUI_FETCHED)
    image_list = body.get("imageList")
    if isinstance(image_list, list):
        for i, item in enumerate(image_list):
            if isinstance(item, dict):
                refs += _ref(("imageList", i, "data"), item.get("data"), kinds=_SDWEBUI_FETCHED)
    return refs


_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def inline_image_type(value: str) -> str | None:
    """The image type of a plain base64 string (no ``data:`` prefix), else None.

    Tells an inline image from a file name: a file name has a dot or is not base64, and even a
    base64-looking name does not decode to an image's magic number.
    """
    if len(value) < 16 or len(value) % 4 or not _BASE64.match(value):
        return None
    try:
        head = base64.b64decode(value[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    for magic, content_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def comfyui_input_refs(graph: Mapping[str, Any]) -> list[InputRef]:
    """Inputs of a ComfyUI API-format workflow to upload: ``LoadImage`` nodes' ``image`` given
    as a URL, a data: URI or plain base64 (seen as the data: URI it stands for). Any other
    value is a file name on the ComfyUI server."""
    refs: list[InputRef] = []
    for node_id, node in graph.items():
        if isinstance(node, dict) and node.get("class_type") == "LoadImage":
            inputs = node.get("inputs")
            if not isinstance(inputs, dict):
                continue
            path: JsonPath = (node_id, "inputs", "image")
            value = inputs.get("image")
            if isinstance(value, str) and classify(value) == "inline":
                content_type = inline_image_type(value)
                if content_type is not None:
                    refs.append(InputRef(path, f"data:{content_type};base64,{value}"))
                continue
            refs += _ref(path, value, kinds=_COMFYUI_FETCHED)
    return refs


def substitute(body: Mapping[str, Any], values: Mapping[JsonPath, Any]) -> dict[str, Any]:
    """A deep copy of ``body`` with each path replaced by its value."""
    out: dict[str, Any] = copy.deepcopy(dict(body))
    for path, value in values.items():
        target: Any = out
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return out
