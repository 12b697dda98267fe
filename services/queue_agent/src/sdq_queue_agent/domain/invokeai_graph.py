"""InvokeAI: SD WebUI-style content translated to an InvokeAI graph, raw ``invokeai-graph``
batches checked and prepared, queue items read back (pure).

What goes to InvokeAI is the body of ``POST /api/v1/queue/default/enqueue_batch``:
``{"batch": {"graph": {"id", "nodes": {id: {"id", "type", ...fields}}, "edges": [...]},
"runs", "data"?}, "prepend": false}``. Each generated image is one queue item (InvokeAI's way:
``batch.data`` varies the seed), and the images of a finished item are the ``image`` outputs of
the graph's non-intermediate nodes.

Models are named, not keyed: a model field may be ``{"name": "<file or model name>"}`` and the
runtime adapter resolves it against InvokeAI's model manager (installing it from the node's
model cache by path when it is missing there).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sdq_contracts.messages import ApiVersion, TaskMessage
from sdq_contracts.requests import TaskType
from sdq_queue_agent.domain.inputs import classify
from sdq_queue_agent.domain.model import InputRef, JsonPath, RuntimeRequest
from sdq_queue_agent.domain.sdwebui_body import normalize_v1alpha1
from sdq_queue_agent.errors import (
    InvalidTaskError,
    RuntimeRejectedError,
    TransientTaskError,
    UnknownModelError,
    WorkflowExecutionError,
)

# Node ids of the translated graph (prefixed so they never clash with anything InvokeAI adds).
MODEL_NODE = "sdq_model"
POSITIVE_NODE = "sdq_positive"
NEGATIVE_NODE = "sdq_negative"
NOISE_NODE = "sdq_noise"
DENOISE_NODE = "sdq_denoise"
OUTPUT_NODE = "sdq_output"
INIT_NODE = "sdq_init_image"
ENCODE_NODE = "sdq_encode"

MAX_IMAGES = 64
MAX_SIDE = 8192
TERMINAL = frozenset({"completed", "failed", "canceled"})
# Keys of a ModelIdentifierField; a dict with a name and only these keys is a model reference.
_MODEL_ID_KEYS = frozenset({"key", "hash", "name", "base", "type", "submodel_type"})

# SD WebUI sampler names → InvokeAI scheduler names (InvokeAI's own names are accepted as-is).
SAMPLERS: dict[str, str] = {
    "euler a": "euler_a",
    "euler": "euler",
    "lms": "lms",
    "heun": "heun",
    "dpm2": "kdpm_2",
    "dpm2 a": "kdpm_2_a",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ sde": "dpmpp_sde",
    "dpm++ 2m sde": "dpmpp_2m_sde",
    "ddim": "ddim",
    "plms": "pndm",
    "unipc": "unipc",
    "lcm": "lcm",
    "deis": "deis",
}
SCHEDULERS = frozenset(
    {
        "ddim",
        "ddpm",
        "deis",
        "deis_k",
        "lms",
        "lms_k",
        "pndm",
        "heun",
        "heun_k",
        "euler",
        "euler_k",
        "euler_a",
        "kdpm_2",
        "kdpm_2_k",
        "kdpm_2_a",
        "kdpm_2_a_k",
        "dpmpp_2s",
        "dpmpp_2s_k",
        "dpmpp_2m",
        "dpmpp_2m_k",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_k",
        "dpmpp_3m",
        "dpmpp_3m_k",
        "dpmpp_sde",
        "dpmpp_sde_k",
        "er_sde",
        "unipc",
        "unipc_k",
        "lcm",
        "tcd",
    }
)
DEFAULT_SCHEDULER = "euler_a"
# SD WebUI fields that change the picture and have no translation here: refused, never ignored.
_UNSUPPORTED = {
    "mask": "inpainting masks",
    "enable_hr": "hires fix",
    "script_name": "SD WebUI scripts",
    "refiner_checkpoint": "refiner models",
    "restore_faces": "face restoration",
    "tiling": "tiling",
}


# ----------------------------------------------------------------------------- shaping


def shape(
    task: TaskMessage, content: dict[str, Any], *, static_model: str | None
) -> RuntimeRequest:
    """The enqueue body for ``task`` and the inputs still to fetch (and upload)."""
    if task.tasktype is TaskType.INVOKEAI_GRAPH:
        return _shape_graph(task, content)
    if task.tasktype not in (TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE):
        raise InvalidTaskError(f"InvokeAI does not run {task.tasktype.value!r} tasks")
    body = (
        normalize_v1alpha1(task.tasktype, content)
        if task.api_version is ApiVersion.V1ALPHA1
        else copy.deepcopy(content)
    )
    model = static_model or _requested_model(body) or task.sd_model_checkpoint
    if not model:
        raise InvalidTaskError(
            "this InvokeAI runtime has no static model: name one in "
            "override_settings.sd_model_checkpoint"
        )
    return translate(task.id, task.tasktype, body, model)


def _requested_model(body: Mapping[str, Any]) -> str | None:
    overrides = body.get("override_settings")
    if isinstance(overrides, dict) and isinstance(overrides.get("sd_model_checkpoint"), str):
        return str(overrides["sd_model_checkpoint"])
    return None


def translate(
    task_id: str, tasktype: TaskType, body: Mapping[str, Any], model: str
) -> RuntimeRequest:
    """An SD1.5-family text-to-image or image-to-image graph from SD WebUI-style fields."""
    for key, what in _UNSUPPORTED.items():
        if body.get(key) not in (None, False, "", 0):
            raise InvalidTaskError(
                f"content.{key}: {what} are not supported on InvokeAI runtimes; "
                "send an 'invokeai-graph' task for this"
            )
    scripts = body.get("alwayson_scripts")
    if isinstance(scripts, dict) and scripts:
        raise InvalidTaskError(
            f"content.alwayson_scripts: SD WebUI scripts ({', '.join(sorted(scripts))}) do not "
            "run on InvokeAI runtimes"
        )
    width = _int(body, "width", 512, 8, MAX_SIDE)
    height = _int(body, "height", 512, 8, MAX_SIDE)
    steps = _int(body, "steps", 20, 1, 500)
    count = _int(body, "batch_size", 1, 1, MAX_IMAGES) * _int(body, "n_iter", 1, 1, MAX_IMAGES)
    if count > MAX_IMAGES:
        raise InvalidTaskError(f"content: batch_size x n_iter is {count}; at most {MAX_IMAGES}")
    cfg = _number(body, "cfg_scale", 7.0, 0.0, 200.0)
    seed = _seed(body, task_id)
    nodes: dict[str, dict[str, Any]] = {
        MODEL_NODE: {"type": "main_model_loader", "model": {"name": model}},
        POSITIVE_NODE: {"type": "compel", "prompt": _text(body, "prompt")},
        NEGATIVE_NODE: {"type": "compel", "prompt": _text(body, "negative_prompt")},
        NOISE_NODE: {
            "type": "noise",
            "seed": seed,
            "width": width,
            "height": height,
            "use_cpu": True,  # the same noise on every device: seeds reproduce across GPUs
        },
        DENOISE_NODE: {
            "type": "denoise_latents",
            "steps": steps,
            "cfg_scale": cfg,
            "scheduler": scheduler(body),
            "denoising_start": 0.0,
            "denoising_end": 1.0,
        },
        OUTPUT_NODE: {"type": "l2i", "fp32": True},
    }
    edges = [
        _edge(MODEL_NODE, "unet", DENOISE_NODE, "unet"),
        _edge(MODEL_NODE, "clip", POSITIVE_NODE, "clip"),
        _edge(MODEL_NODE, "clip", NEGATIVE_NODE, "clip"),
        _edge(POSITIVE_NODE, "conditioning", DENOISE_NODE, "positive_conditioning"),
        _edge(NEGATIVE_NODE, "conditioning", DENOISE_NODE, "negative_conditioning"),
        _edge(NOISE_NODE, "noise", DENOISE_NODE, "noise"),
        _edge(DENOISE_NODE, "latents", OUTPUT_NODE, "latents"),
        _edge(MODEL_NODE, "vae", OUTPUT_NODE, "vae"),
    ]
    inputs: list[InputRef] = []
    if tasktype is TaskType.IMAGE_TO_IMAGE:
        images = body.get("init_images")
        if not isinstance(images, list) or not images:
            raise InvalidTaskError("content.init_images: image-to-image needs one input image")
        if len(images) > 1:
            raise InvalidTaskError(
                "content.init_images: InvokeAI runtimes take exactly one init image"
            )
        strength = _number(body, "denoising_strength", 0.75, 0.0, 1.0)
        nodes[INIT_NODE] = {
            "type": "img_resize",
            "image": {"image_name": ""},
            "width": width,
            "height": height,
        }
        nodes[ENCODE_NODE] = {"type": "i2l", "fp32": True}
        nodes[DENOISE_NODE]["denoising_start"] = round(1.0 - strength, 6)
        edges += [
            _edge(INIT_NODE, "image", ENCODE_NODE, "image"),
            _edge(MODEL_NODE, "vae", ENCODE_NODE, "vae"),
            _edge(ENCODE_NODE, "latents", DENOISE_NODE, "latents"),
        ]
        path: JsonPath = ("batch", "graph", "nodes", INIT_NODE, "image", "image_name")
        inputs.append(InputRef(path, as_fetchable(images[0], "content.init_images[0]")))
    for node_id, node in nodes.items():
        node["id"] = node_id
        node["is_intermediate"] = node_id != OUTPUT_NODE
    batch: dict[str, Any] = {
        "graph": {"id": f"sdq-{task_id}", "nodes": nodes, "edges": edges},
        "runs": 1,
        "origin": "sdq",
    }
    if count > 1:
        batch["data"] = [
            [
                {
                    "node_path": NOISE_NODE,
                    "field_name": "seed",
                    "items": [(seed + i) % 2**32 for i in range(count)],
                }
            ]
        ]
    body_out = {"batch": batch, "prepend": False}
    no_cache_on_outputs(body_out)
    return RuntimeRequest(
        task_id=task_id, tasktype=tasktype, body=body_out, inputs=tuple(inputs), model=model
    )


def _shape_graph(task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
    """A client-built batch: ``{"batch": {...}}``, a batch ``{"graph", "runs"?, "data"?}``, or a
    bare graph ``{"nodes", "edges"}``."""
    data = copy.deepcopy(content)
    if set(data) <= {"batch", "prepend"} and isinstance(data.get("batch"), dict):
        batch = data["batch"]
    elif isinstance(data.get("graph"), dict):
        batch = data
    elif isinstance(data.get("nodes"), dict):
        batch = {"graph": data}
    else:
        raise InvalidTaskError(
            'content: an invokeai-graph task is an InvokeAI batch ({"graph": {"nodes", '
            '"edges"}, "runs"?, "data"?}) or a graph ({"nodes", "edges"})'
        )
    check_graph(batch)
    batch.setdefault("origin", "sdq")
    body = {"batch": batch, "prepend": False}
    no_cache_on_outputs(body)
    return RuntimeRequest(
        task_id=task.id,
        tasktype=task.tasktype,
        body=body,
        inputs=tuple(graph_input_refs(body)),
    )


def check_graph(batch: dict[str, Any]) -> None:
    """Structural checks with field names; InvokeAI itself validates types and edges."""
    graph = batch.get("graph")
    if not isinstance(graph, dict):
        raise InvalidTaskError("content.graph: expected an object with nodes and edges")
    nodes = graph.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise InvalidTaskError("content.graph.nodes: expected a non-empty object (id → node)")
    for node_id, node in nodes.items():
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise InvalidTaskError(f"content.graph.nodes.{node_id}: every node needs a 'type'")
        if node.get("id", node_id) != node_id:
            raise InvalidTaskError(
                f"content.graph.nodes.{node_id}.id: must equal its key ({node.get('id')!r})"
            )
        node["id"] = node_id
    edges = graph.get("edges", [])
    if not isinstance(edges, list):
        raise InvalidTaskError("content.graph.edges: expected a list")
    for i, edge in enumerate(edges):
        for end in ("source", "destination"):
            point = edge.get(end) if isinstance(edge, dict) else None
            if not isinstance(point, dict) or point.get("node_id") not in nodes:
                raise InvalidTaskError(
                    f"content.graph.edges[{i}].{end}: must name a node of the graph "
                    '({"node_id", "field"})'
                )
    runs = batch.get("runs", 1)
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_IMAGES:
        raise InvalidTaskError(f"content.runs: expected an integer from 1 to {MAX_IMAGES}")


def no_cache_on_outputs(body: dict[str, Any]) -> None:
    """Output nodes never take InvokeAI's node cache: sdq deletes their images after upload,
    and a cached result would point a later task at a deleted image."""
    for node in body["batch"]["graph"]["nodes"].values():
        if not node.get("is_intermediate", False):
            node["use_cache"] = False


def graph_input_refs(body: Mapping[str, Any]) -> Iterator[InputRef]:
    """Image fields (``{"image_name": <url>}``) of nodes and batch data whose name is an http(s),
    s3 or data: URL: fetched and uploaded to InvokeAI. A plain name is an image InvokeAI has."""
    batch = body["batch"]
    for node_id, node in batch["graph"]["nodes"].items():
        for field, value in node.items():
            yield from _image_ref(("batch", "graph", "nodes", node_id, field), value)
    for i, group in enumerate(batch.get("data") or []):
        for j, datum in enumerate(group if isinstance(group, list) else []):
            items = datum.get("items") if isinstance(datum, dict) else None
            for k, item in enumerate(items if isinstance(items, list) else []):
                yield from _image_ref(("batch", "data", i, j, "items", k), item)


def _image_ref(path: JsonPath, value: Any) -> Iterator[InputRef]:
    if isinstance(value, dict) and set(value) == {"image_name"}:
        name = value["image_name"]
        if isinstance(name, str) and classify(name) in ("http", "s3", "data"):
            yield InputRef((*path, "image_name"), name)


def as_fetchable(value: Any, where: str) -> str:
    """An SD WebUI image value as something the worker fetches: URLs and data: URIs as they
    are, plain base64 wrapped into a data: URI (InvokeAI reads images only by upload)."""
    if not isinstance(value, str) or not value:
        raise InvalidTaskError(f"{where}: expected a base64 image, data: URI or http(s)/s3 URL")
    if classify(value) != "inline":
        return value
    try:
        head = base64.b64decode(value[:64] + "=" * (-len(value[:64]) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTaskError(f"{where}: not base64 image data") from None
    kind = (
        "image/jpeg"
        if head.startswith(b"\xff\xd8")
        else "image/webp"
        if head[8:12] == b"WEBP"
        else "image/png"
    )
    return f"data:{kind};base64,{value}"


def scheduler(body: Mapping[str, Any]) -> str:
    """The InvokeAI scheduler for ``sampler_name`` (and SD WebUI 1.9+'s ``scheduler: Karras``)."""
    raw = body.get("sampler_name") or body.get("sampler_index")
    if raw is None:
        return DEFAULT_SCHEDULER
    if not isinstance(raw, str):
        raise InvalidTaskError("content.sampler_name: expected a string")
    if raw in SCHEDULERS:
        return raw
    name = raw.strip().lower()
    karras = name.endswith(" karras") or str(body.get("scheduler", "")).lower() == "karras"
    name = name.removesuffix(" karras")
    if name not in SAMPLERS:
        known = ", ".join(sorted({*(s.title() for s in SAMPLERS), "<name> Karras"}))
        raise InvalidTaskError(
            f"content.sampler_name: {raw!r} has no InvokeAI scheduler (known: {known}, "
            "or an InvokeAI scheduler name)"
        )
    chosen = SAMPLERS[name]
    return f"{chosen}_k" if karras and f"{chosen}_k" in SCHEDULERS else chosen


def _int(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidTaskError(f"content.{key}: expected an integer from {lo} to {hi}")
    return value


def _number(body: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise InvalidTaskError(f"content.{key}: expected a number from {lo:g} to {hi:g}")
    return float(value)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidTaskError(f"content.{key}: expected a string")
    return value


def _seed(body: Mapping[str, Any], task_id: str) -> int:
    """The task's seed; ``-1`` or none is derived from the task id, so a redelivered task draws
    the same picture again."""
    value = body.get("seed", -1)
    if value is None:
        value = -1
    if isinstance(value, bool) or not isinstance(value, int) or value < -1 or value >= 2**32:
        raise InvalidTaskError("content.seed: expected -1 or an integer from 0 to 4294967295")
    if value == -1:
        return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:4], "big")
    return value


def _edge(src: str, src_field: str, dst: str, dst_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": src, "field": src_field},
        "destination": {"node_id": dst, "field": dst_field},
    }


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelRef:
    """A model field of the graph named by ``name`` only (no InvokeAI key yet)."""

    path: JsonPath
    name: str
    # The model type the field wants, when the node says so (main_model_loader: "main").
    model_type: str | None


def model_refs(body: Mapping[str, Any]) -> list[ModelRef]:
    refs: list[ModelRef] = []
    for node_id, node in body["batch"]["graph"]["nodes"].items():
        for field, value in node.items():
            if (
                isinstance(value, dict)
                and isinstance(value.get("name"), str)
                and "key" not in value
                and set(value) <= _MODEL_ID_KEYS
            ):
                wanted = "main" if node.get("type") == "main_model_loader" else value.get("type")
                refs.append(
                    ModelRef(("batch", "graph", "nodes", node_id, field), value["name"], wanted)
                )
    return refs


def model_stem(name: str) -> str:
    """``dir/model.safetensors`` → ``model`` (how InvokeAI names a checkpoint it installs)."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def find_model(
    records: list[dict[str, Any]], name: str, model_type: str | None = None
) -> dict[str, Any] | None:
    """The model manager record InvokeAI knows by ``name`` (its name, file name or stem)."""
    wanted = model_stem(name)
    for record in records:
        if model_type is not None and record.get("type") != model_type:
            continue
        names = {str(record.get(k) or "") for k in ("name", "path", "source")}
        if name in names or wanted in {model_stem(n) for n in names if n}:
            return record
    return None


def find_in_scan(found: list[dict[str, Any]], name: str) -> str | None:
    """The path, among ``scan_folder`` results, of the model file called ``name``."""
    wanted = model_stem(name)
    exact = [f["path"] for f in found if str(f.get("path", "")).endswith("/" + name)]
    if exact:
        return str(exact[0])
    for item in found:
        path = str(item.get("path") or "")
        if path and model_stem(path) == wanted:
            return path
    return None


def identifier(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelIdentifierField of a model manager record."""
    return {k: record[k] for k in ("key", "hash", "name", "base", "type") if k in record}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ItemOutcome:
    item_id: int
    status: str
    images: tuple[str, ...]
    error_type: str | None = None
    error_message: str | None = None
    # Every image the item's nodes wrote, intermediates included (what to clean up).
    produced: tuple[str, ...] = ()


def image_names(value: Any) -> Iterator[str]:
    """Every ``{"image_name": ...}`` inside a JSON value."""
    if isinstance(value, dict):
        name = value.get("image_name")
        if isinstance(name, str):
            yield name
        for inner in value.values():
            yield from image_names(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from image_names(inner)


def item_outcome(item: Mapping[str, Any]) -> ItemOutcome:
    """Status, error and output image names (graph order) of a queue item."""
    session = item.get("session") or {}
    graph_nodes = (session.get("graph") or {}).get("nodes") or {}
    mapping = session.get("source_prepared_mapping") or {}
    results = session.get("results") or {}
    images: list[str] = []
    for source_id, node in graph_nodes.items():
        if not isinstance(node, dict) or node.get("is_intermediate", False):
            continue
        for prepared in sorted(mapping.get(source_id) or []):
            output = results.get(prepared)
            image = output.get("image") if isinstance(output, dict) else None
            if isinstance(image, dict) and isinstance(image.get("image_name"), str):
                images.append(image["image_name"])
    return ItemOutcome(
        item_id=int(item.get("item_id", 0)),
        status=str(item.get("status") or ""),
        images=tuple(images),
        error_type=item.get("error_type"),
        error_message=item.get("error_message"),
        produced=tuple(dict.fromkeys(image_names(results))),
    )


# Exception names of failures that may pass on another try (memory, a device hiccup).
_TRANSIENT_ERRORS = frozenset({"OutOfMemoryError", "MemoryError", "CUDAError", "AcceleratorError"})


def failure(outcome: ItemOutcome) -> Exception:
    """The classified failure of a failed item."""
    kind = outcome.error_type or "error"
    message = (outcome.error_message or "").strip()
    text = f"InvokeAI queue item {outcome.item_id} failed: {kind}: {message}".strip()
    if kind in _TRANSIENT_ERRORS or "out of memory" in message.lower():
        return TransientTaskError(text)
    lowered = message.lower()
    if lowered.startswith("unknown model") or kind in (
        "UnknownModelException",
        "ModelNotFoundException",
    ):
        return UnknownModelError(text)
    return WorkflowExecutionError(text)


def enqueue_error(status: int, payload: Any, text: str) -> RuntimeRejectedError:
    """A 4xx answer to enqueue_batch (FastAPI's 422 lists each invalid field)."""
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):
        parts = []
        for err in detail[:5]:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
                msg = str(err.get("msg", ""))[:300]
                parts.append(f"{loc}: {msg}" if loc else msg)
        summary = "; ".join(parts) or text[:300]
    elif detail:
        summary = str(detail)[:500]
    else:
        summary = text[:300]
    return RuntimeRejectedError(f"InvokeAI refused the graph (HTTP {status}): {summary}")
