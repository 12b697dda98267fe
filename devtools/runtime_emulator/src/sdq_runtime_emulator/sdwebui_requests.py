"""Request bodies of the emulated SD WebUI API, validated like its FastAPI/pydantic-v1 models.

A bad field gives the 422 ``{"detail": [{"loc", "msg", "type"}]}`` body SD WebUI sends;
unknown fields are ignored and ``null`` means "use the default", as there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Spec = dict[str, tuple[str, Any]]

TXT2IMG: Spec = {
    "prompt": ("str", ""),
    "negative_prompt": ("str", ""),
    "styles": ("list", []),
    "seed": ("int", -1),
    "subseed": ("int", -1),
    "sampler_name": ("str", None),
    "sampler_index": ("str", "Euler"),
    "scheduler": ("str", "Automatic"),
    "batch_size": ("int", 1),
    "n_iter": ("int", 1),
    "steps": ("int", 50),
    "cfg_scale": ("float", 7.0),
    "width": ("int", 512),
    "height": ("int", 512),
    "restore_faces": ("bool", False),
    "tiling": ("bool", False),
    "enable_hr": ("bool", False),
    "denoising_strength": ("float", 0.0),
    "override_settings": ("dict", {}),
    "override_settings_restore_afterwards": ("bool", True),
    "send_images": ("bool", True),
    "save_images": ("bool", False),
    "alwayson_scripts": ("dict", {}),
}
IMG2IMG: Spec = TXT2IMG | {
    "init_images": ("list", None),
    "mask": ("str", None),
    "denoising_strength": ("float", 0.75),
    "resize_mode": ("int", 0),
    "mask_blur": ("int", 4),
    "inpainting_fill": ("int", 0),
    "inpaint_full_res": ("bool", True),
    "include_init_images": ("bool", False),
}
EXTRAS: Spec = {
    "resize_mode": ("int", 0),
    "show_extras_results": ("bool", True),
    "gfpgan_visibility": ("float", 0.0),
    "codeformer_visibility": ("float", 0.0),
    "codeformer_weight": ("float", 0.0),
    "upscaling_resize": ("float", 2.0),
    "upscaling_resize_w": ("int", 512),
    "upscaling_resize_h": ("int", 512),
    "upscaling_crop": ("bool", True),
    "upscaler_1": ("str", "None"),
    "upscaler_2": ("str", "None"),
    "extras_upscaler_2_visibility": ("float", 0.0),
    "upscale_first": ("bool", False),
}
EXTRAS_SINGLE: Spec = EXTRAS | {"image": ("str", "")}
EXTRAS_BATCH: Spec = EXTRAS | {"imageList": ("list", None)}

_MESSAGES = {
    "int": ("value is not a valid integer", "type_error.integer"),
    "float": ("value is not a valid float", "type_error.float"),
    "str": ("str type expected", "type_error.str"),
    "bool": ("value could not be parsed to a boolean", "type_error.bool"),
    "dict": ("value is not a valid dict", "type_error.dict"),
    "list": ("value is not a valid list", "type_error.list"),
}
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


class RequestInvalid(Exception):
    """The body does not match the model; ``detail`` is the 422 body's list."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(json.dumps(detail))
        self.detail = detail


def parse_body(raw: bytes, spec: Spec, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a JSON body against ``spec``; ``defaults`` override the spec's defaults."""
    try:
        body = json.loads(raw or b"null")
    except json.JSONDecodeError as error:
        raise RequestInvalid(
            [{"loc": ["body", error.pos], "msg": error.msg, "type": "value_error.jsondecode"}]
        ) from error
    if body is None:
        raise RequestInvalid(
            [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
        )
    if not isinstance(body, dict):
        raise RequestInvalid(
            [{"loc": ["body"], "msg": _MESSAGES["dict"][0], "type": _MESSAGES["dict"][1]}]
        )
    defaults = defaults or {}
    clean: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, (kind, default) in spec.items():
        value = body.get(name)
        if value is None:
            clean[name] = defaults.get(name, default)
            continue
        try:
            clean[name] = _coerce(kind, value)
        except ValueError:
            message, error_type = _MESSAGES[kind]
            errors.append({"loc": ["body", name], "msg": message, "type": error_type})
    if errors:
        raise RequestInvalid(errors)
    return clean


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if isinstance(value, bool | int | float):
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, int | float | str):
        return float(value)
    raise ValueError(value)


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).lower() in _TRUE | _FALSE:
        return str(value).lower() in _TRUE
    raise ValueError(value)


def _of_type(expected: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, expected):
            return value
        raise ValueError(value)

    return check


_COERCE: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "bool": _to_bool,
    "dict": _of_type(dict),
    "list": _of_type(list),
}


def _coerce(kind: str, value: Any) -> Any:
    return _COERCE[kind](value)
