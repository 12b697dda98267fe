"""SD WebUI request shaping and response reading (pure)."""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from sdq_contracts.messages import ApiVersion, TaskMessage
from sdq_contracts.requests import V1ALPHA1_ROUTING_KEYS, TaskType
from sdq_queue_agent.domain.files import sniff
from sdq_queue_agent.domain.inputs import sdwebui_input_refs
from sdq_queue_agent.domain.model import OutputFile, RuntimeRequest
from sdq_queue_agent.errors import InvalidTaskError, RuntimeRejectedError, UnknownScriptError

ENDPOINTS: dict[TaskType, str] = {
    TaskType.TEXT_TO_IMAGE: "txt2img",
    TaskType.IMAGE_TO_IMAGE: "img2img",
    TaskType.EXTRA_SINGLE_IMAGE: "extra-single-image",
    TaskType.EXTRA_BATCH_IMAGES: "extra-batch-images",
}
# Task types whose endpoint loads a checkpoint (extras only upscale).
MODEL_TASKS = frozenset({TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE})


def normalize_v1alpha1(tasktype: TaskType, body: dict[str, Any]) -> dict[str, Any]:
    """Strip the routing keys from ``alwayson_scripts`` and map ``image_link`` to the input field."""
    out = copy.deepcopy(body)
    scripts = out.get("alwayson_scripts")
    image_link = None
    if isinstance(scripts, dict):
        image_link = scripts.get("image_link")
        rest = {k: v for k, v in scripts.items() if k not in V1ALPHA1_ROUTING_KEYS}
        if rest:
            out["alwayson_scripts"] = rest
        else:
            out.pop("alwayson_scripts")
    if isinstance(image_link, str) and image_link:
        if tasktype is TaskType.IMAGE_TO_IMAGE and not out.get("init_images"):
            out["init_images"] = [image_link]
        elif tasktype is TaskType.EXTRA_SINGLE_IMAGE and not out.get("image"):
            out["image"] = image_link
        elif tasktype is TaskType.EXTRA_BATCH_IMAGES and not out.get("imageList"):
            out["imageList"] = [{"data": image_link, "name": "image_link"}]
    return out


def shape(task: TaskMessage, content: dict[str, Any], *, dynamic_model: bool) -> RuntimeRequest:
    if task.tasktype not in ENDPOINTS:
        raise InvalidTaskError(f"SD WebUI does not run {task.tasktype.value!r} tasks")
    body = (
        normalize_v1alpha1(task.tasktype, content)
        if task.api_version is ApiVersion.V1ALPHA1
        else copy.deepcopy(content)
    )
    guide_model = _pop_script_model(body)
    model = task.sd_model_checkpoint if dynamic_model and task.tasktype in MODEL_TASKS else None
    if guide_model is not None and task.tasktype in MODEL_TASKS:
        if dynamic_model:
            model = model or guide_model
        else:
            overrides = body.get("override_settings")
            overrides = dict(overrides) if isinstance(overrides, dict) else {}
            overrides.setdefault("sd_model_checkpoint", guide_model)
            body["override_settings"] = overrides
    if task.tasktype is TaskType.EXTRA_BATCH_IMAGES:
        _name_batch_images(body)
    return RuntimeRequest(
        task_id=task.id,
        tasktype=task.tasktype,
        body=body,
        inputs=tuple(sdwebui_input_refs(body)),
        model=model,
    )


def _pop_script_model(body: dict[str, Any]) -> str | None:
    """Take the seed guide's ``alwayson_scripts.sd_model_checkpoint`` out of the body.

    SD WebUI has no script of that name (it answers 422 ``Script 'sd_model_checkpoint' not
    found``): the guide means "use this checkpoint", which is the model override.
    """
    scripts = body.get("alwayson_scripts")
    if not isinstance(scripts, dict) or "sd_model_checkpoint" not in scripts:
        return None
    rest = dict(scripts)
    value = rest.pop("sd_model_checkpoint")
    if rest:
        body["alwayson_scripts"] = rest
    else:
        body.pop("alwayson_scripts")
    if isinstance(value, dict):  # the script form {"args": ["name"]}
        args = value.get("args")
        value = args[0] if isinstance(args, list) and args else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidTaskError("alwayson_scripts.sd_model_checkpoint must be a checkpoint name")
    return value


def _name_batch_images(body: dict[str, Any]) -> None:
    """SD WebUI requires ``name`` on every ``imageList`` item (422 without): give one."""
    items = body.get("imageList")
    if not isinstance(items, list):
        return
    for n, item in enumerate(items, start=1):
        if isinstance(item, dict) and not isinstance(item.get("name"), str):
            item["name"] = f"image-{n}"


def script_names(body: dict[str, Any]) -> list[str]:
    """The ``alwayson_scripts`` the body asks SD WebUI to run."""
    scripts = body.get("alwayson_scripts")
    return [str(name) for name in scripts] if isinstance(scripts, dict) else []


def check_scripts(tasktype: TaskType, body: dict[str, Any], available: dict[str, Any]) -> None:
    """Raise :class:`UnknownScriptError` for an ``alwayson_scripts`` entry the runtime lacks.

    ``available`` is the answer of ``GET /sdapi/v1/scripts`` (``{"txt2img": [...],
    "img2img": [...]}``, lower-case titles); SD WebUI matches names case-insensitively.
    """
    wanted = script_names(body)
    if not wanted:
        return
    tab = "img2img" if tasktype is TaskType.IMAGE_TO_IMAGE else "txt2img"
    known = [str(n) for n in available.get(tab) or [] if n]
    lowered = {n.lower() for n in known}
    missing = [n for n in wanted if n.lower() not in lowered]
    if missing:
        raise UnknownScriptError(
            f"alwayson_scripts: SD WebUI has no script {', '.join(repr(m) for m in missing)} "
            f"for {tab} (an extension not installed?); it has: {', '.join(known) or 'none'}"
        )


_SCRIPT_NOT_FOUND = re.compile(r"(?:Script '(.+?)' not found|always on script (.+?) not found)")


def missing_script(payload: Any) -> str | None:
    """The script named by SD WebUI's 422 ``Script '<name>' not found`` answer, if it is one."""
    if not isinstance(payload, dict):
        return None
    for key in ("detail", "errors"):
        value = payload.get(key)
        if isinstance(value, str):
            match = _SCRIPT_NOT_FOUND.search(value)
            if match:
                return match.group(1) or match.group(2)
    return None


# Exceptions SD WebUI raises for a resource shortage that may pass on another try.
_TRANSIENT_EXCEPTIONS = frozenset({"OutOfMemoryError", "MemoryError", "TimeoutError"})


def request_error(status: int, payload: Any) -> str | None:
    """The runtime's message when an HTTP 500 is SD WebUI's own error answer for this request.

    SD WebUI's exception handler answers every exception raised while handling a request
    (``could not find upscaler named …``, ``Invalid encoded image``, the NaN check) with
    ``{"error": <exception>, "detail", "body", "errors": <message>}``: such a request fails the
    same way on every try. Answers of another shape (a proxy's 502/503, plain text), and
    exceptions of a shortage that may pass (out of memory), are not request errors.
    """
    if status != 500 or not isinstance(payload, dict):
        return None
    error, errors, detail = payload.get("error"), payload.get("errors"), payload.get("detail")
    if not isinstance(error, str) or not error or not isinstance(errors, str):
        return None
    # v1.10.1 leaves ``errors`` empty for an HTTPException and puts its text in ``detail``.
    message = errors or (detail if isinstance(detail, str) else "")
    if error in _TRANSIENT_EXCEPTIONS or "out of memory" in message.lower():
        return None
    return f"{error}: {message}" if message else error


def with_model(body: dict[str, Any], title: str) -> dict[str, Any]:
    """Ask for ``title`` per request and keep it loaded for the next task."""
    out = dict(body)
    overrides = dict(out.get("override_settings") or {})
    overrides["sd_model_checkpoint"] = title
    out["override_settings"] = overrides
    out["override_settings_restore_afterwards"] = False
    return out


def find_model(models: list[dict[str, Any]], wanted: str) -> str | None:
    """The ``title`` of the checkpoint SD WebUI knows by ``wanted`` (title, file name or stem)."""

    def norm(name: str) -> str:
        name = name.split(" [", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0] if name.endswith((".safetensors", ".ckpt")) else name

    for model in models:
        names = [str(model.get(k) or "") for k in ("title", "model_name", "filename")]
        if wanted in names or any(norm(n) == norm(wanted) for n in names if n):
            return str(model.get("title") or model.get("model_name"))
    return None


def _decode(image: Any, where: str) -> bytes:
    if not isinstance(image, str):
        raise RuntimeRejectedError(f"SD WebUI answered a non-string image at {where}")
    if image.startswith("data:"):
        image = image.split(",", 1)[-1]
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeRejectedError(
            f"SD WebUI answered an image that is not base64 at {where}"
        ) from None


def read_response(
    tasktype: TaskType, response: dict[str, Any]
) -> tuple[list[OutputFile], dict[str, Any]]:
    """Decode the images of an answer; returns the files and the response with images elided.

    Each image string is replaced by ``<output n>``: the n-th object ``{id}-{xxxx}-{n}.{ext}``.
    """
    key = "image" if tasktype is TaskType.EXTRA_SINGLE_IMAGE else "images"
    raw = response.get(key)
    images = [raw] if key == "image" else raw
    if not isinstance(images, list):
        raise RuntimeRejectedError(f"SD WebUI answered without {key!r}")
    files = []
    for i, image in enumerate(images):
        data = _decode(image, f"{key}[{i}]")
        content_type, ext = sniff(data)
        files.append(OutputFile(data=data, content_type=content_type, ext=ext))
    elided = dict(response)
    placeholders = [f"<output {n}>" for n in range(1, len(files) + 1)]
    elided[key] = placeholders[0] if key == "image" and placeholders else placeholders
    return files, elided


def error_detail(status: int, payload: Any, text: str) -> str:
    """A one-line summary of an SD WebUI error answer."""
    if isinstance(payload, dict):
        for key in ("errors", "detail", "error"):
            value = payload.get(key)
            if value:
                return f"HTTP {status}: {value if isinstance(value, str) else _short(value)}"
    return f"HTTP {status}: {text[:300]}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."
