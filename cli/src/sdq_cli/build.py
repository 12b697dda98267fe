"""Build an API request from command-line flags or from a request / workflow file."""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdq_cli.errors import CliError, Exit
from sdq_contracts.config import RuntimeType
from sdq_contracts.requests import TASK_TYPES_BY_RUNTIME, TaskType

_URL_PREFIXES = ("http://", "https://", "s3://", "data:")
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}


@dataclass(frozen=True)
class Submission:
    path: str  # /v1alpha2 or /v1alpha1
    body: dict[str, Any]


@dataclass(frozen=True)
class TaskFlags:
    runtime: str | None = None
    tasktype: str | None = None
    task_id: str | None = None
    prefix: str | None = None
    context: str | None = None
    callback_url: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    batch_size: int | None = None
    n_iter: int | None = None
    denoising_strength: float | None = None
    model: str | None = None
    images: tuple[str, ...] = ()
    mask: str | None = None
    upscale: float | None = None
    upscaler: str = "Lanczos"
    workflow: str | None = None
    file: str | None = None


def image_ref(value: str) -> str:
    """A URL stays a URL; a local file becomes a data: URI (the agent decodes it)."""
    if value.startswith(_URL_PREFIXES):
        return value
    path = Path(value)
    if not path.is_file():
        raise CliError(f"input image not found: {value}", Exit.USAGE)
    kind = mimetypes.guess_type(path.name)[0] or ""
    if kind not in _IMAGE_TYPES:
        raise CliError(f"{value} is not an image file (png, jpeg, webp, gif or bmp)", Exit.USAGE)
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _json_file(value: str, what: str) -> Any:
    path = Path(value)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {what} {value}: {exc.strerror}", Exit.USAGE) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{what} {value} is not valid JSON: {exc}", Exit.USAGE) from None


def load_workflow(value: str) -> dict[str, Any]:
    """A ComfyUI workflow in API format: {node id: {class_type, inputs}}."""
    graph = _json_file(value, "workflow file")
    if isinstance(graph, dict) and isinstance(graph.get("prompt"), dict):
        graph = graph["prompt"]  # the body of a ComfyUI /prompt request
    if not isinstance(graph, dict) or not graph:
        raise CliError(f"workflow file {value} must be a JSON object of nodes", Exit.USAGE)
    if "nodes" in graph and "links" in graph:
        raise CliError(
            f"workflow file {value} is in ComfyUI's UI format; export it with "
            "'Save (API Format)' instead",
            Exit.USAGE,
        )
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise CliError(
                f"workflow file {value}: node {node_id!r} has no class_type (is this the "
                "API-format export?)",
                Exit.USAGE,
            )
    return graph


def infer_tasktype(flags: TaskFlags) -> TaskType:
    if flags.tasktype:
        try:
            return TaskType(flags.tasktype)
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            raise CliError(
                f"unknown --type {flags.tasktype!r} (one of: {known})", Exit.USAGE
            ) from None
    if flags.workflow:
        return TaskType.PIPELINE
    if flags.upscale is not None:
        return TaskType.EXTRA_BATCH_IMAGES if len(flags.images) > 1 else TaskType.EXTRA_SINGLE_IMAGE
    if flags.images:
        return TaskType.IMAGE_TO_IMAGE
    return TaskType.TEXT_TO_IMAGE


def pick_runtime(tasktype: TaskType, runtimes: Mapping[str, str]) -> str:
    for name, kind in runtimes.items():
        try:
            if tasktype in TASK_TYPES_BY_RUNTIME[RuntimeType(kind)]:
                return name
        except ValueError:
            continue
    raise CliError(f"no runtime given for a {tasktype.value} task: pass --runtime NAME", Exit.USAGE)


def _generation_params(flags: TaskFlags) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in (
        ("prompt", flags.prompt),
        ("negative_prompt", flags.negative_prompt),
        ("width", flags.width),
        ("height", flags.height),
        ("steps", flags.steps),
        ("seed", flags.seed),
        ("cfg_scale", flags.cfg_scale),
        ("sampler_name", flags.sampler),
        ("batch_size", flags.batch_size),
        ("n_iter", flags.n_iter),
        ("denoising_strength", flags.denoising_strength),
    ):
        if value is not None:
            params[key] = value
    if flags.model:
        params["override_settings"] = {"sd_model_checkpoint": flags.model}
    return params


def _content(tasktype: TaskType, flags: TaskFlags) -> dict[str, Any]:
    images = [image_ref(i) for i in flags.images]
    if tasktype is TaskType.PIPELINE:
        if not flags.workflow:
            raise CliError("a pipeline task needs --workflow FILE (ComfyUI API format)", Exit.USAGE)
        graph = load_workflow(flags.workflow)
        loaders = [n for n in graph.values() if n["class_type"] == "LoadImage"]
        if images and len(images) != len(loaders):
            raise CliError(
                f"--image given {len(images)} time(s) but the workflow has {len(loaders)} "
                "LoadImage node(s)",
                Exit.USAGE,
            )
        for node, image in zip(loaders, images, strict=False):
            node.setdefault("inputs", {})["image"] = image
        return graph
    if tasktype in (TaskType.EXTRA_SINGLE_IMAGE, TaskType.EXTRA_BATCH_IMAGES):
        if not images:
            raise CliError(f"a {tasktype.value} task needs --image", Exit.USAGE)
        content: dict[str, Any] = {
            "resize_mode": 0,
            "upscaling_resize": flags.upscale or 2,
            "upscaler_1": flags.upscaler,
        }
        if tasktype is TaskType.EXTRA_SINGLE_IMAGE:
            content["image"] = images[0]
        else:
            names = [
                Path(i).name if not i.startswith(_URL_PREFIXES) else f"image-{n}"
                for n, i in enumerate(flags.images)
            ]
            content["imageList"] = [
                {"data": d, "name": n} for d, n in zip(images, names, strict=True)
            ]
        return content
    content = {"prompt": flags.prompt or ""} | _generation_params(flags)
    if tasktype is TaskType.IMAGE_TO_IMAGE:
        if not images:
            raise CliError("an image-to-image task needs --image", Exit.USAGE)
        content["init_images"] = images
        if flags.mask:
            content["mask"] = image_ref(flags.mask)
    return content


def _context(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # plain text is a fine context too


def build(flags: TaskFlags, runtimes: Mapping[str, str]) -> Submission:
    if flags.file:
        body = _json_file(flags.file, "request file")
        if not isinstance(body, dict):
            raise CliError(f"request file {flags.file} must be a JSON object", Exit.USAGE)
        if isinstance(body.get("alwayson_scripts"), dict) and "task" in body["alwayson_scripts"]:
            return Submission("/v1alpha1", body)
        if not isinstance(body.get("task"), dict):
            raise CliError(
                f"request file {flags.file} is neither a v1alpha2 body ({{'task': ...}}) nor a "
                "v1alpha1 body (alwayson_scripts.task)",
                Exit.USAGE,
            )
        meta = body["task"].setdefault("metadata", {})
        for key, value in (
            ("runtime", flags.runtime),
            ("id", flags.task_id),
            ("prefix", flags.prefix),
        ):
            if value is not None:
                meta[key] = value
        return Submission("/v1alpha2", body)

    tasktype = infer_tasktype(flags)
    metadata: dict[str, Any] = {
        "runtime": flags.runtime or pick_runtime(tasktype, runtimes),
        "tasktype": tasktype.value,
        "prefix": flags.prefix if flags.prefix is not None else "outputs",
    }
    if flags.task_id:
        metadata["id"] = flags.task_id
    if flags.context is not None:
        metadata["context"] = _context(flags.context)
    if flags.callback_url:
        metadata["callback_url"] = flags.callback_url
    return Submission(
        "/v1alpha2", {"task": {"metadata": metadata, "content": _content(tasktype, flags)}}
    )
