"""Inputs given by URL: which fields may hold one, and what a value in such a field means.

Only explicit image fields are looked at (``init_images``, ``mask``, ``image``,
``imageList[].data``, v1alpha1 ``image_link`` after mapping, ComfyUI ``LoadImage.image``).
A string anywhere else that happens to start with ``http`` is passed through untouched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sdq_contracts.keys import parse_s3_uri
from sdq_queue_agent.domain.model import InputRef, JsonPath
from sdq_queue_agent.errors import InputRefusedError

InputKind = Literal["http", "s3", "inline"]
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Scheme-looking prefixes that are inline data, never fetched.
_INLINE_SCHEMES = frozenset({"data"})


def classify(value: str) -> InputKind:
    """``http``/``s3`` for a URL to fetch, ``inline`` for data; other URL schemes are refused."""
    match = _SCHEME.match(value)
    if match is None:
        return "inline"
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "s3":
        return "s3"
    if scheme in _INLINE_SCHEMES:
        return "inline"
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


def _ref(path: JsonPath, value: Any) -> list[InputRef]:
    if isinstance(value, str) and classify(value) != "inline":
        return [InputRef(path, value)]
    return []


def sdwebui_input_refs(body: Mapping[str, Any]) -> list[InputRef]:
    """URL inputs of an SD WebUI body (every task type's explicit image fields)."""
    refs: list[InputRef] = []
    init_images = body.get("init_images")
    if isinstance(init_images, list):
        for i, value in enumerate(init_images):
            refs += _ref(("init_images", i), value)
    refs += _ref(("mask",), body.get("mask"))
    refs += _ref(("image",), body.get("image"))
    image_list = body.get("imageList")
    if isinstance(image_list, list):
        for i, item in enumerate(image_list):
            if isinstance(item, dict):
                refs += _ref(("imageList", i, "data"), item.get("data"))
    return refs


def comfyui_input_refs(graph: Mapping[str, Any]) -> list[InputRef]:
    """URL inputs of a ComfyUI API-format workflow: ``LoadImage`` nodes' ``image``."""
    refs: list[InputRef] = []
    for node_id, node in graph.items():
        if isinstance(node, dict) and node.get("class_type") == "LoadImage":
            inputs = node.get("inputs")
            if isinstance(inputs, dict):
                refs += _ref((node_id, "inputs", "image"), inputs.get("image"))
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
