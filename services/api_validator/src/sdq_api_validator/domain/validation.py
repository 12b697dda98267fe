"""Turn a request body into a TaskMessage, or say exactly what is wrong with it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sdq_api_validator.errors import ApiError, bad_request
from sdq_contracts.config import RuntimeConfig, RuntimeType
from sdq_contracts.messages import ApiVersion, TaskMessage
from sdq_contracts.requests import (
    TASK_TYPES_BY_RUNTIME,
    TaskType,
    V1Alpha1Request,
    V1Alpha2Request,
)

# Schemes an input image reference may use; anything else that looks like a URL is refused.
_URL_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{1,15}):")
_IMAGE_SCHEMES = frozenset({"http", "https", "s3", "data"})
_MAX_NODES = 2_000
_MAX_IMAGES_PER_TASK = 64
_SIZE_LIMIT = 8192

_M = TypeVar("_M", bound=BaseModel)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object", code="empty_body")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    return data


def _loc(parts: Iterable[int | str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_errors(exc: ValidationError, root: str = "") -> ApiError:
    first = exc.errors()[0]
    field = _loc([root, *first["loc"]] if root else first["loc"])
    message = first["msg"]
    if first["type"] == "missing":
        message = "this field is required"
    elif first["type"] == "extra_forbidden":
        message = "unknown field"
    return bad_request(f"{field}: {message}", field=field)


def _validate(model: type[_M], data: dict[str, Any]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _model_errors(exc) from None


def _check_image_ref(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise bad_request(
            f"{field}: expected a non-empty string (base64 image, http(s) or s3:// URL)", field
        )
    match = _URL_LIKE.match(value)
    if match and match.group(1).lower() not in _IMAGE_SCHEMES and "/" in value[:40]:
        raise bad_request(
            f"{field}: '{match.group(1)}' URLs are not accepted; use http(s), s3:// or base64",
            field,
        )


def _check_int(content: dict[str, Any], key: str, lo: int, hi: int, root: str) -> None:
    if key not in content:
        return
    value = content[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(f"{root}.{key}: expected an integer from {lo} to {hi}", f"{root}.{key}")


def _check_generation_params(content: dict[str, Any], root: str) -> None:
    for key in ("width", "height"):
        _check_int(content, key, 8, _SIZE_LIMIT, root)
    _check_int(content, "steps", 1, 500, root)
    _check_int(content, "batch_size", 1, _MAX_IMAGES_PER_TASK, root)
    _check_int(content, "n_iter", 1, _MAX_IMAGES_PER_TASK, root)
    images = int(content.get("batch_size", 1)) * int(content.get("n_iter", 1))
    if images > _MAX_IMAGES_PER_TASK:
        raise bad_request(
            f"{root}: batch_size x n_iter is {images}; at most {_MAX_IMAGES_PER_TASK} images per task",
            f"{root}.batch_size",
        )
    for key in ("prompt", "negative_prompt"):
        if key in content and not isinstance(content[key], str):
            raise bad_request(f"{root}.{key}: expected a string", f"{root}.{key}")
    scripts = content.get("alwayson_scripts")
    if scripts is not None and not isinstance(scripts, dict):
        raise bad_request(
            f"{root}.alwayson_scripts: expected an object", f"{root}.alwayson_scripts"
        )
    overrides = content.get("override_settings")
    if overrides is not None and not isinstance(overrides, dict):
        raise bad_request(
            f"{root}.override_settings: expected an object", f"{root}.override_settings"
        )


def _check_pipeline(content: dict[str, Any], root: str) -> None:
    if not content:
        raise bad_request(
            f"{root}: a pipeline needs a ComfyUI workflow in API format (node id → node)", root
        )
    if len(content) > _MAX_NODES:
        raise bad_request(f"{root}: the workflow has more than {_MAX_NODES} nodes", root)
    has_output = False
    for node_id, node in content.items():
        where = f"{root}.{node_id}"
        if not isinstance(node, dict):
            raise bad_request(f"{where}: expected a node object with class_type and inputs", where)
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise bad_request(
                f"{where}.class_type: every node needs a class_type (is this the API-format export?)",
                f"{where}.class_type",
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise bad_request(f"{where}.inputs: expected an object", f"{where}.inputs")
        for name, value in node.get("inputs", {}).items():
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
            if is_link and str(value[0]) not in content:
                raise bad_request(
                    f"{where}.inputs.{name}: links to node '{value[0]}', which is not in the workflow",
                    f"{where}.inputs.{name}",
                )
        if class_type == "LoadImage" and "image" in node.get("inputs", {}):
            _check_image_ref(node["inputs"]["image"], f"{where}.inputs.image")
        has_output = (
            has_output or class_type.startswith(("Save", "Preview")) or "Save" in class_type
        )
    if not has_output:
        raise bad_request(f"{root}: the workflow has no output node (e.g. SaveImage)", root)


def check_content(tasktype: TaskType, content: dict[str, Any], root: str) -> None:
    """Structural checks per task type; the runtime does the semantic ones."""
    if tasktype is TaskType.PIPELINE:
        _check_pipeline(content, root)
        return
    _check_generation_params(content, root)
    if tasktype is TaskType.IMAGE_TO_IMAGE:
        images = content.get("init_images")
        if not isinstance(images, list) or not images:
            raise bad_request(
                f"{root}.init_images: image-to-image needs a non-empty list of input images",
                f"{root}.init_images",
            )
        for i, image in enumerate(images):
            _check_image_ref(image, f"{root}.init_images[{i}]")
        if "mask" in content and content["mask"] is not None:
            _check_image_ref(content["mask"], f"{root}.mask")
    elif tasktype is TaskType.EXTRA_SINGLE_IMAGE:
        _check_image_ref(content.get("image"), f"{root}.image")
    elif tasktype is TaskType.EXTRA_BATCH_IMAGES:
        items = content.get("imageList")
        if not isinstance(items, list) or not items:
            raise bad_request(
                f"{root}.imageList: extra-batch-images needs a non-empty list of {{data, name}}",
                f"{root}.imageList",
            )
        if len(items) > _MAX_IMAGES_PER_TASK:
            raise bad_request(
                f"{root}.imageList: at most {_MAX_IMAGES_PER_TASK} images", f"{root}.imageList"
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad_request(
                    f"{root}.imageList[{i}]: expected {{data, name}}", f"{root}.imageList[{i}]"
                )
            _check_image_ref(item.get("data"), f"{root}.imageList[{i}].data")


def _requested_model(content: dict[str, Any]) -> str | None:
    overrides = content.get("override_settings")
    if isinstance(overrides, dict) and isinstance(overrides.get("sd_model_checkpoint"), str):
        return str(overrides["sd_model_checkpoint"])
    return None


def _same_model(a: str, b: str) -> bool:
    """SD WebUI names a checkpoint by file name, title ("name.safetensors [hash]") or stem."""

    def norm(name: str) -> str:
        name = name.split(" [", 1)[0].rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0] if name.endswith((".safetensors", ".ckpt")) else name

    return norm(a) == norm(b)


def _runtime_for(runtimes: Sequence[RuntimeConfig], name: str) -> RuntimeConfig:
    for runtime in runtimes:
        if runtime.name == name:
            return runtime
    known = ", ".join(r.name for r in runtimes)
    raise bad_request(
        f"task.metadata.runtime: unknown runtime '{name}' (this deployment has: {known})",
        "task.metadata.runtime",
        code="unknown_runtime",
    )


def new_task_id() -> str:
    return uuid.uuid4().hex


def validate_v1alpha2(data: dict[str, Any], runtimes: Sequence[RuntimeConfig]) -> TaskMessage:
    request = _validate(V1Alpha2Request, data)
    meta = request.task.metadata
    runtime = _runtime_for(runtimes, meta.runtime)
    if meta.tasktype not in TASK_TYPES_BY_RUNTIME[runtime.type]:
        accepted = ", ".join(sorted(t.value for t in TASK_TYPES_BY_RUNTIME[runtime.type]))
        raise bad_request(
            f"task.metadata.tasktype: runtime '{runtime.name}' ({runtime.type.value}) does not run "
            f"'{meta.tasktype.value}' tasks; it accepts: {accepted}",
            "task.metadata.tasktype",
            code="unsupported_tasktype",
        )
    content = request.task.content
    check_content(meta.tasktype, content, "task.content")
    model = _requested_model(content) if runtime.type is RuntimeType.SDWEBUI else None
    if model is not None and runtime.model is not None and not _same_model(model, runtime.model):
        raise bad_request(
            f"task.content.override_settings.sd_model_checkpoint: runtime '{runtime.name}' serves "
            f"the static model '{runtime.model}', not '{model}'",
            "task.content.override_settings.sd_model_checkpoint",
            code="unknown_model",
        )
    return TaskMessage(
        id=meta.id or new_task_id(),
        runtime=runtime.name,
        tasktype=meta.tasktype,
        api_version=ApiVersion.V1ALPHA2,
        prefix=meta.prefix,
        context=meta.context,
        callback_url=str(meta.callback_url) if meta.callback_url else None,
        sd_model_checkpoint=model or runtime.model,
        content=content,
    )


def route_v1alpha1(runtimes: Sequence[RuntimeConfig], model: str) -> RuntimeConfig:
    """The SD WebUI runtime whose static model matches, else a dynamic-model SD WebUI runtime."""
    sdwebui = [r for r in runtimes if r.type is RuntimeType.SDWEBUI]
    for runtime in sdwebui:
        if runtime.model is not None and _same_model(runtime.model, model):
            return runtime
    for runtime in sdwebui:
        if runtime.dynamic_model:
            return runtime
    served = ", ".join(r.model for r in sdwebui if r.model) or "none"
    raise bad_request(
        f"alwayson_scripts.sd_model_checkpoint: no runtime serves model '{model}' "
        f"(static models: {served}; no dynamic-model SD WebUI runtime)",
        "alwayson_scripts.sd_model_checkpoint",
        code="unknown_model",
    )


def validate_v1alpha1(data: dict[str, Any], runtimes: Sequence[RuntimeConfig]) -> TaskMessage:
    request = _validate(V1Alpha1Request, data)
    scripts = request.alwayson_scripts
    if scripts.task is TaskType.PIPELINE:
        raise bad_request(
            "alwayson_scripts.task: v1alpha1 runs SD WebUI tasks only; send pipelines to /v1alpha2",
            "alwayson_scripts.task",
            code="unsupported_tasktype",
        )
    runtime = route_v1alpha1(runtimes, scripts.sd_model_checkpoint)
    content = dict(data)
    # image_link stands in for the input image of image tasks; the agent fetches it.
    if scripts.image_link:
        _check_image_ref(scripts.image_link, "alwayson_scripts.image_link")
    if not (scripts.image_link and scripts.task is not TaskType.TEXT_TO_IMAGE):
        check_content(scripts.task, content, "body")
    return TaskMessage(
        id=scripts.id_task or new_task_id(),
        runtime=runtime.name,
        tasktype=scripts.task,
        api_version=ApiVersion.V1ALPHA1,
        prefix=scripts.save_dir,
        sd_model_checkpoint=scripts.sd_model_checkpoint,
        content=content,
    )
