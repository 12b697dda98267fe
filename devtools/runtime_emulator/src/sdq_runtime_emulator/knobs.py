"""Knobs of the sdq runtime EMULATOR (dev/test only; it draws placeholder images).

A :class:`Knobs` value is frozen. The running server holds the current one and replaces it
when a test posts ``/emulator/knobs`` or when a fault counter (``fail_next``, ``hang_next``,
``exit_next``) is consumed, so ``GET /emulator/knobs`` always shows what is still armed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

SlowStartMode = Literal["503", "drop"]
FailKind = Literal["http", "execution_error"]
FailScope = Literal["generation", "all"]
ComfyApi = Literal["v0.8.0", "newer"]

MAX_IMAGE_SIDE = 4096


class KnobError(ValueError):
    """A knob value is invalid; the message names the field."""


@dataclass(frozen=True)
class Knobs:
    """Behaviour of one emulator server.

    Latency is per generation (one SD WebUI generation request, or one ComfyUI prompt that
    executes at least one node), whatever the number of images: it is the total wall time,
    rendering included, and the emulator sleeps only what rendering left over.
    """

    generation_latency_s: float = 0.0
    """Total wall time of one generation (per request/prompt, not per image)."""
    model_switch_latency_s: float = 0.0
    """Time a checkpoint switch takes (options POST, override_settings, CheckpointLoader)."""
    default_width: int = 512
    default_height: int = 512
    slow_start_s: float = 0.0
    """For this long after start (or after the knob is set) every route but /emulator/* is
    not ready."""
    slow_start_mode: SlowStartMode = "503"
    """``503``: answer 503; ``drop``: close the connection without an answer."""
    fail_next: int = 0
    """Fail the next N matching requests (see ``fail_scope``, ``fail_kind``)."""
    fail_status: int = 500
    """HTTP status of an injected ``http`` failure (any 4xx or 5xx)."""
    fail_kind: FailKind = "http"
    """``http``: answer ``fail_status`` at once; ``execution_error``: the generation starts
    and then fails (SD WebUI 500 RuntimeError, ComfyUI ``execution_error`` event)."""
    fail_scope: FailScope = "generation"
    """``generation``: only generation routes count; ``all``: every route but /emulator/*."""
    hang_next: int = 0
    """The next N generations never finish until interrupted or the client goes away."""
    exit_next: int = 0
    """The next N generations die half-way: the subprocess form exits hard (``os._exit``),
    the in-process form drops the connection (ComfyUI: drops sockets, forgets history)."""
    models_dir: str | None = None
    """Directory scanned for ``Stable-diffusion/*`` and ``checkpoints/*`` model files."""
    initial_model: str | None = None
    """Checkpoint loaded at start (default: the first known one)."""
    comfyui_api: ComfyApi = "v0.8.0"
    """``v0.8.0``: the pinned release (``GET /api/jobs`` and ``/api/jobs/{id}``, any
    ``prompt_id``); ``newer``: later releases, which add ``POST /api/jobs/{id}/cancel`` and
    refuse a client-chosen ``prompt_id`` that is not a canonical UUID."""

    def __post_init__(self) -> None:
        _check_non_negative("generation_latency_s", self.generation_latency_s)
        _check_non_negative("model_switch_latency_s", self.model_switch_latency_s)
        _check_non_negative("slow_start_s", self.slow_start_s)
        for name in ("default_width", "default_height"):
            value = getattr(self, name)
            if not 8 <= value <= MAX_IMAGE_SIDE:
                raise KnobError(f"{name}: must be between 8 and {MAX_IMAGE_SIDE}, got {value}")
        for name in ("fail_next", "hang_next", "exit_next"):
            if getattr(self, name) < 0:
                raise KnobError(f"{name}: must be >= 0")
        if not 400 <= self.fail_status <= 599:
            raise KnobError(f"fail_status: must be a 4xx or 5xx code, got {self.fail_status}")
        _check_choice("slow_start_mode", self.slow_start_mode, SlowStartMode)
        _check_choice("fail_kind", self.fail_kind, FailKind)
        _check_choice("fail_scope", self.fail_scope, FailScope)
        _check_choice("comfyui_api", self.comfyui_api, ComfyApi)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: dict[str, Any]) -> Knobs:
        """A copy with ``changes`` applied; unknown names and wrong types raise KnobError."""
        return dataclasses.replace(self, **coerce_knobs(changes))


def coerce_knobs(raw: dict[str, Any]) -> dict[str, Any]:
    """Type-check a partial knob mapping (JSON or CLI values) field by field."""
    fields = {field.name: field for field in dataclasses.fields(Knobs)}
    clean: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            raise KnobError(f"{name}: unknown knob (known: {', '.join(sorted(fields))})")
        clean[name] = _coerce(name, str(fields[name].type), value)
    return clean


def _coerce(name: str, type_name: str, value: Any) -> Any:
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KnobError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise KnobError(f"{name}: expected an integer, got {value!r}")
        return value
    if type_name == "str | None":
        if value is not None and not isinstance(value, str):
            raise KnobError(f"{name}: expected a string or null, got {value!r}")
        return value
    if not isinstance(value, str):
        raise KnobError(f"{name}: expected a string, got {value!r}")
    return value


def _check_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise KnobError(f"{name}: must be >= 0, got {value}")


def _check_choice(name: str, value: str, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise KnobError(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")
