"""Turn a request body into a TaskMessage, or say exactly what is wrong with it."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sdq_api_validator.errors import InvalidRequest, bad_request
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
# Deepest nesting a request may have (a ComfyUI workflow needs about five levels).
MAX_DEPTH = 64
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
# Leading bytes of the image formats the runtimes read.
_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
# Runtime types that take SD WebUI-style content (InvokeAI translates it to a graph) and the
# task types of that content which load a checkpoint.
_MODEL_BY_OVERRIDE = frozenset({RuntimeType.SDWEBUI, RuntimeType.INVOKEAI})
_MODEL_TASKS = frozenset({TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE})


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object", code="empty_body")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    except RecursionError:
        raise bad_request(
            f"the request body is nested too deeply (at most {MAX_DEPTH} levels)",
            code="too_deep",
        ) from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise bad_request(
            f"the request body holds a number that is too large: {exc}", code="invalid_number"
        ) from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    check_values(data)
    return data


def check_values(data: dict[str, Any]) -> None:
    """Refuse what parses as JSON but breaks every consumer after the API: nesting deeper than
    :data:`MAX_DEPTH`, strings with lone surrogates (not encodable as UTF-8), integers beyond
    64 bits, and NaN/Infinity. The error names the field."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise bad_request(
                f"{_loc(path) or 'body'}: nested deeper than {MAX_DEPTH} levels",
                _loc(path),
                code="too_deep",
            )
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, (*path, key))
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not _MIN_INT <= value <= _MAX_INT:
            raise bad_request(
                f"{_loc(path)}: integer out of range (at most 64 bits)",
                _loc(path),
                code="invalid_number",
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise bad_request(
                f"{_loc(path)}: NaN and Infinity are not JSON numbers",
                _loc(path),
                code="invalid_number",
            )


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        where = _loc(path) or "body"
        raise bad_request(
            f"{where}: contains a lone UTF-16 surrogate (e.g. \\ud800), which is not text",
            where,
            code="invalid_text",
        ) from None


def _loc(parts: Iterable[int | str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_errors(exc: ValidationError, root: str = "") -> InvalidRequest:
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


def _check_image_ref(value: Any, field: str, inline: bool = True) -> None:
    """An image given by URL, data: URI or (``inline``) base64; inline images must decode and
    look like an image, so a broken upload is the client's 400, not a runtime outage."""
    if not isinstance(value, str) or not value:
        raise bad_request(
            f"{field}: expected a non-empty string (base64 image, http(s) or s3:// URL)", field
        )
    match = _URL_LIKE.match(value)
    scheme = match.group(1).lower() if match else None
    if scheme in ("http", "https", "s3"):
        return
    if scheme == "data":
        header, comma, payload = value.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise bad_request(f"{field}: expected a data:image/...;base64, URI", field, "bad_image")
        _check_base64_image(payload, field)
        return
    if match and "/" in value[:40]:
        raise bad_request(
            f"{field}: '{match.group(1)}' URLs are not accepted; use http(s), s3:// or base64",
            field,
        )
    if inline:
        _check_base64_image(value, field)


def _check_base64_image(text: str, field: str) -> None:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(
            f"{field}: not valid base64 (send the image as base64, a data: URI or a URL)",
            field,
            code="bad_image",
        ) from None
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not (is_webp or data.startswith(_IMAGE_MAGIC)):
        raise bad_request(
            f"{field}: the base64 data is not a PNG, JPEG, WebP, GIF, BMP or TIFF image",
            field,
            code="bad_image",
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
            # A plain string may name a file on the ComfyUI server; only URIs are checked.
            _check_image_ref(node["inputs"]["image"], f"{where}.inputs.image", inline=False)
        has_output = (
            has_output or class_type.startswith(("Save", "Preview")) or "Save" in class_type
        )
    if not has_output:
        raise bad_request(f"{root}: the workflow has no output node (e.g. SaveImage)", root)


def _check_invokeai_graph(content: dict[str, Any], root: str) -> None:
    """An InvokeAI batch ({"graph", "runs"?, "data"?}), optionally wrapped as {"batch": ...},
    or a bare graph ({"nodes", "edges"}); InvokeAI validates node types and edge types."""
    batch: Any = content
    where = root
    if isinstance(content.get("batch"), dict):
        batch, where = content["batch"], f"{root}.batch"
    graph, graph_at = (batch.get("graph"), f"{where}.graph") if "graph" in batch else (batch, where)
    if (
        not isinstance(graph, dict)
        or not isinstance(graph.get("nodes"), dict)
        or not graph["nodes"]
    ):
        raise bad_request(
            f"{graph_at}.nodes: an invokeai-graph task needs an InvokeAI graph "
            '({"nodes": {id: {"type", ...}}, "edges": [...]})',
            f"{graph_at}.nodes",
        )
    _check_invokeai_nodes(graph["nodes"], graph_at)
    _check_invokeai_edges(graph.get("edges", []), graph["nodes"], graph_at)
    runs = batch.get("runs", 1) if batch is not graph else 1
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= _MAX_IMAGES_PER_TASK:
        raise bad_request(
            f"{where}.runs: expected an integer from 1 to {_MAX_IMAGES_PER_TASK}", f"{where}.runs"
        )


def _check_invokeai_nodes(nodes: dict[str, Any], graph_at: str) -> None:
    if len(nodes) > _MAX_NODES:
        raise bad_request(f"{graph_at}.nodes: more than {_MAX_NODES} nodes", f"{graph_at}.nodes")
    for node_id, node in nodes.items():
        at = f"{graph_at}.nodes.{node_id}"
        if not isinstance(node, dict) or not isinstance(node.get("type"), str) or not node["type"]:
            raise bad_request(f"{at}.type: every node needs a type", f"{at}.type")
        for name, value in node.items():
            if isinstance(value, dict) and set(value) == {"image_name"}:
                _check_image_ref(value["image_name"], f"{at}.{name}.image_name")


def _check_invokeai_edges(edges: Any, nodes: dict[str, Any], graph_at: str) -> None:
    if not isinstance(edges, list):
        raise bad_request(f"{graph_at}.edges: expected a list", f"{graph_at}.edges")
    for i, edge in enumerate(edges):
        for end in ("source", "destination"):
            point = edge.get(end) if isinstance(edge, dict) else None
            if not isinstance(point, dict) or point.get("node_id") not in nodes:
                raise bad_request(
                    f"{graph_at}.edges[{i}].{end}: must name a node of the graph "
                    '({"node_id", "field"})',
                    f"{graph_at}.edges[{i}].{end}",
                )


def check_content(tasktype: TaskType, content: dict[str, Any], root: str) -> None:
    """Structural checks per task type; the runtime does the semantic ones."""
    if tasktype is TaskType.PIPELINE:
        _check_pipeline(content, root)
        return
    if tasktype is TaskType.INVOKEAI_GRAPH:
        _check_invokeai_graph(content, root)
        return
    _check_generation_params(content, root)
    if tasktype is TaskType.IMAGE_TO_IMAGE:
        _check_init_images(content, root)
    elif tasktype is TaskType.EXTRA_SINGLE_IMAGE:
        _check_image_ref(content.get("image"), f"{root}.image")
    elif tasktype is TaskType.EXTRA_BATCH_IMAGES:
        _check_image_list(content.get("imageList"), root)


def _check_init_images(content: dict[str, Any], root: str) -> None:
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


def _check_image_list(items: Any, root: str) -> None:
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


def _requested_model(content: dict[str, Any]) -> tuple[str, str] | None:
    """The checkpoint a v1alpha2 SD WebUI body asks for, and the field that asks.

    ``override_settings.sd_model_checkpoint`` or the seed guide's
    ``alwayson_scripts.sd_model_checkpoint`` (the agent turns the latter into the former).
    """
    overrides = content.get("override_settings")
    if isinstance(overrides, dict) and isinstance(overrides.get("sd_model_checkpoint"), str):
        return str(overrides["sd_model_checkpoint"]), "override_settings.sd_model_checkpoint"
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict) and "sd_model_checkpoint" in scripts:
        value = scripts["sd_model_checkpoint"]
        if isinstance(value, dict) and isinstance(value.get("args"), list) and value["args"]:
            value = value["args"][0]
        if not isinstance(value, str) or not value:
            raise bad_request(
                "task.content.alwayson_scripts.sd_model_checkpoint: must be a checkpoint name",
                "task.content.alwayson_scripts.sd_model_checkpoint",
            )
        return value, "alwayson_scripts.sd_model_checkpoint"
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
    # SD WebUI-style content names its checkpoint the same way on SD WebUI and InvokeAI.
    requested = (
        _requested_model(content)
        if runtime.type is RuntimeType.SDWEBUI
        or (runtime.type in _MODEL_BY_OVERRIDE and meta.tasktype in _MODEL_TASKS)
        else None
    )
    model = requested[0] if requested else None
    if requested and runtime.model is not None and not _same_model(requested[0], runtime.model):
        raise bad_request(
            f"task.content.{requested[1]}: runtime '{runtime.name}' serves "
            f"the static model '{runtime.model}', not '{requested[0]}'",
            f"task.content.{requested[1]}",
            code="unknown_model",
        )
    if (
        runtime.type is RuntimeType.INVOKEAI
        and meta.tasktype in _MODEL_TASKS
        and model is None
        and runtime.model is None
    ):
        raise bad_request(
            f"task.content.override_settings.sd_model_checkpoint: runtime '{runtime.name}' has "
            "no static model; name the checkpoint to use",
            "task.content.override_settings.sd_model_checkpoint",
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
        output=meta.output,
    )


def route_v1alpha1(
    runtimes: Sequence[RuntimeConfig], model: str, tasktype: TaskType = TaskType.TEXT_TO_IMAGE
) -> RuntimeConfig:
    """The runtime whose static model matches, else a dynamic-model runtime: SD WebUI first,
    then (for text-to-image and image-to-image, which it translates) InvokeAI."""
    kinds = [RuntimeType.SDWEBUI]
    if tasktype in _MODEL_TASKS:
        kinds.append(RuntimeType.INVOKEAI)
    able = [r for kind in kinds for r in runtimes if r.type is kind]
    for runtime in able:
        if runtime.model is not None and _same_model(runtime.model, model):
            return runtime
    for runtime in able:
        if runtime.dynamic_model:
            return runtime
    served = ", ".join(r.model for r in able if r.model) or "none"
    raise bad_request(
        f"alwayson_scripts.sd_model_checkpoint: no runtime serves model '{model}' "
        f"(static models: {served}; no dynamic-model runtime for '{tasktype.value}' tasks)",
        "alwayson_scripts.sd_model_checkpoint",
        code="unknown_model",
    )


def validate_v1alpha1(data: dict[str, Any], runtimes: Sequence[RuntimeConfig]) -> TaskMessage:
    request = _validate(V1Alpha1Request, data)
    scripts = request.alwayson_scripts
    if scripts.task in (TaskType.PIPELINE, TaskType.INVOKEAI_GRAPH):
        raise bad_request(
            "alwayson_scripts.task: v1alpha1 runs SD WebUI-style tasks only; send "
            f"'{scripts.task.value}' tasks to /v1alpha2",
            "alwayson_scripts.task",
            code="unsupported_tasktype",
        )
    runtime = route_v1alpha1(runtimes, scripts.sd_model_checkpoint, scripts.task)
    content = dict(data)
    # image_link stands in for the input image of image tasks; the agent fetches it.
    if scripts.image_link:
        _check_image_ref(scripts.image_link, "alwayson_scripts.image_link", inline=False)
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
