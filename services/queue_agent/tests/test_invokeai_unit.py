"""InvokeAI domain: SD WebUI-style content → graph, raw batches, model references, queue items,
failure classification (pure, no runtime)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sdq_contracts.messages import ApiVersion, TaskMessage
from sdq_contracts.requests import TaskType
from sdq_queue_agent.domain import invokeai_graph as ig
from sdq_queue_agent.errors import (
    InvalidTaskError,
    TransientTaskError,
    UnknownModelError,
    WorkflowExecutionError,
)

pytestmark = pytest.mark.unit

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()


def _task(tasktype: str = "text-to-image", content: Any = None, **fields: Any) -> TaskMessage:
    return TaskMessage.model_validate(
        {"id": "t1", "runtime": "inv", "tasktype": tasktype, "content": content or {}} | fields
    )


def _shape(tasktype: str, content: dict[str, Any], model: str | None = "m.safetensors") -> Any:
    return ig.shape(_task(tasktype, content), content, static_model=model)


def _edges(body: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (
            e["source"]["node_id"],
            e["source"]["field"],
            e["destination"]["node_id"],
            e["destination"]["field"],
        )
        for e in body["batch"]["graph"]["edges"]
    }


def test_text_to_image_graph_carries_every_parameter() -> None:
    content = {
        "prompt": "a fox",
        "negative_prompt": "blurry",
        "width": 640,
        "height": 384,
        "steps": 12,
        "cfg_scale": 5.5,
        "seed": 99,
        "sampler_name": "DPM++ 2M Karras",
    }
    request = _shape("text-to-image", content)
    nodes = request.body["batch"]["graph"]["nodes"]
    assert nodes[ig.MODEL_NODE]["model"] == {"name": "m.safetensors"}
    assert nodes[ig.POSITIVE_NODE]["prompt"] == "a fox"
    assert nodes[ig.NEGATIVE_NODE]["prompt"] == "blurry"
    assert (nodes[ig.NOISE_NODE]["width"], nodes[ig.NOISE_NODE]["height"]) == (640, 384)
    assert nodes[ig.NOISE_NODE]["seed"] == 99
    denoise = nodes[ig.DENOISE_NODE]
    assert (denoise["steps"], denoise["cfg_scale"], denoise["scheduler"]) == (12, 5.5, "dpmpp_2m_k")
    assert denoise["denoising_start"] == 0.0
    # Only the decoded image is an output, and it never takes InvokeAI's node cache.
    outputs = [n for n, node in nodes.items() if not node["is_intermediate"]]
    assert outputs == [ig.OUTPUT_NODE] and nodes[ig.OUTPUT_NODE]["use_cache"] is False
    assert all(node["id"] == node_id for node_id, node in nodes.items())
    assert (ig.DENOISE_NODE, "latents", ig.OUTPUT_NODE, "latents") in _edges(request.body)
    assert "data" not in request.body["batch"] and request.inputs == ()
    assert request.model == "m.safetensors"


def test_several_images_are_queue_items_with_consecutive_seeds() -> None:
    request = _shape("text-to-image", {"seed": 4294967295, "batch_size": 2, "n_iter": 2})
    [[datum]] = request.body["batch"]["data"]
    assert datum["node_path"] == ig.NOISE_NODE and datum["field_name"] == "seed"
    assert datum["items"] == [4294967295, 0, 1, 2]


def test_random_seed_is_derived_from_the_task_id() -> None:
    first = _shape("text-to-image", {"seed": -1}).body["batch"]["graph"]["nodes"][ig.NOISE_NODE]
    again = _shape("text-to-image", {}).body["batch"]["graph"]["nodes"][ig.NOISE_NODE]
    assert first["seed"] == again["seed"]


def test_image_to_image_encodes_the_uploaded_input() -> None:
    request = _shape(
        "image-to-image",
        {"init_images": [PNG_B64], "denoising_strength": 0.4, "width": 64, "height": 32},
    )
    nodes = request.body["batch"]["graph"]["nodes"]
    assert nodes[ig.DENOISE_NODE]["denoising_start"] == pytest.approx(0.6)
    assert (nodes[ig.INIT_NODE]["width"], nodes[ig.INIT_NODE]["height"]) == (64, 32)
    edges = _edges(request.body)
    assert (ig.INIT_NODE, "image", ig.ENCODE_NODE, "image") in edges
    assert (ig.ENCODE_NODE, "latents", ig.DENOISE_NODE, "latents") in edges
    [ref] = request.inputs
    assert ref.path == ("batch", "graph", "nodes", ig.INIT_NODE, "image", "image_name")
    # Plain base64 becomes a data: URI the worker decodes, so InvokeAI gets it by upload.
    assert ref.url == f"data:image/png;base64,{PNG_B64}"


def test_v1alpha1_image_link_is_the_init_image() -> None:
    content = {"prompt": "x", "alwayson_scripts": {"image_link": "https://e.example/a.png"}}
    task = _task(
        "image-to-image", content, api_version=ApiVersion.V1ALPHA1.value, sd_model_checkpoint="m"
    )
    [ref] = ig.shape(task, content, static_model=None).inputs
    assert ref.url == "https://e.example/a.png"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"mask": PNG_B64, "init_images": [PNG_B64]}, "content.mask"),
        ({"enable_hr": True}, "content.enable_hr"),
        ({"alwayson_scripts": {"controlnet": {}}}, "content.alwayson_scripts"),
        ({"sampler_name": "Magic Sampler"}, "content.sampler_name"),
        ({"width": 7}, "content.width"),
        ({"batch_size": 64, "n_iter": 2}, "content"),
        ({"init_images": [PNG_B64, PNG_B64]}, "content.init_images"),
        ({"seed": "7"}, "content.seed"),
    ],
)
def test_untranslatable_content_is_refused_by_field(content: dict[str, Any], field: str) -> None:
    tasktype = "image-to-image" if "init_images" in content else "text-to-image"
    with pytest.raises(InvalidTaskError, match=rf"^{field}[.:]?"):
        _shape(tasktype, content)


def test_a_dynamic_runtime_needs_the_task_to_name_a_model() -> None:
    with pytest.raises(InvalidTaskError, match="sd_model_checkpoint"):
        _shape("text-to-image", {"prompt": "x"}, model=None)
    named = {"override_settings": {"sd_model_checkpoint": "other.ckpt"}}
    assert _shape("text-to-image", named, model=None).model == "other.ckpt"


def test_raw_graph_forms_inputs_and_model_references() -> None:
    graph = {
        "nodes": {
            "m": {"type": "main_model_loader", "model": {"name": "dreamshaper_8"}},
            "v": {"type": "vae_loader", "vae_model": {"name": "vae.safetensors", "type": "vae"}},
            "keyed": {"type": "main_model_loader", "model": {"key": "k", "name": "x"}},
            "img": {"type": "img_resize", "image": {"image_name": "s3://o-bucket/in.png"}},
            "own": {"type": "img_blur", "image": {"image_name": "existing.png"}},
        },
        "edges": [],
    }
    for content in ({"batch": {"graph": graph}}, {"graph": graph, "runs": 2}, graph):
        request = _shape("invokeai-graph", content)
        assert request.body["prepend"] is False and "graph" in request.body["batch"]
        [ref] = request.inputs  # only the URL; a plain name is an image InvokeAI has
        assert ref.path == ("batch", "graph", "nodes", "img", "image", "image_name")
        refs = ig.model_refs(request.body)
        assert [(r.path[-2], r.name, r.model_type) for r in refs] == [
            ("m", "dreamshaper_8", "main"),
            ("v", "vae.safetensors", "vae"),
        ]
        nodes = request.body["batch"]["graph"]["nodes"]
        assert all(nodes[n]["use_cache"] is False for n in nodes)  # all non-intermediate


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"prompt": "not a graph"}, "is an InvokeAI batch"),
        ({"nodes": {"a": {"x": 1}}, "edges": []}, "content.graph.nodes.a"),
        ({"nodes": {"a": {"type": "t", "id": "b"}}}, "content.graph.nodes.a.id"),
        ({"nodes": {"a": {"type": "t"}}, "edges": [{"source": {"node_id": "a"}}]}, "edges[0]"),
        ({"graph": {"nodes": {"a": {"type": "t"}}}, "runs": 0}, "content.runs"),
    ],
)
def test_malformed_raw_graphs_are_invalid(content: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _shape("invokeai-graph", content)


def test_model_lookup_by_name_file_or_stem() -> None:
    records = [
        {
            "key": "1",
            "name": "tiny",
            "type": "main",
            "base": "sd-1",
            "path": "/c/tiny-real.safetensors",
        },
        {"key": "2", "name": "vae", "type": "vae", "path": "/m/VAE/vae.safetensors"},
    ]
    assert ig.find_model(records, "tiny.safetensors", "main") == records[0]
    assert ig.find_model(records, "Stable-diffusion/tiny.ckpt")["key"] == "1"  # type: ignore[index]
    assert ig.find_model(records, "/c/tiny-real.safetensors")["key"] == "1"  # type: ignore[index]
    assert ig.find_model(records, "vae", "main") is None
    assert ig.identifier(records[0]) == {"key": "1", "name": "tiny", "base": "sd-1", "type": "main"}
    found = [{"path": "/m/Stable-diffusion/a/tiny.safetensors"}, {"path": "/m/x/tiny2.ckpt"}]
    assert ig.find_in_scan(found, "tiny") == found[0]["path"]
    assert ig.find_in_scan(found, "a/tiny.safetensors") == found[0]["path"]
    assert ig.find_in_scan(found, "nothing") is None


def _item(status: str = "completed", **extra: Any) -> dict[str, Any]:
    """A queue item as GET /api/v1/queue/default/i/{id} answers (prepared ids are uuids)."""
    return {
        "item_id": 3,
        "status": status,
        "session": {
            "graph": {
                "nodes": {
                    "src": {"id": "src", "type": "blank_image", "is_intermediate": True},
                    "out": {"id": "out", "type": "img_blur"},
                    "cond": {"id": "cond", "type": "compel"},
                }
            },
            "results": {
                "p-src": {"image": {"image_name": "src.png"}, "type": "image_output"},
                "p-out": {"image": {"image_name": "out.png"}, "type": "image_output"},
                "p-cond": {
                    "conditioning": {"conditioning_name": "c"},
                    "type": "conditioning_output",
                },
            },
            "source_prepared_mapping": {"src": ["p-src"], "out": ["p-out"], "cond": ["p-cond"]},
        },
    } | extra


def test_item_outputs_are_the_images_of_non_intermediate_nodes() -> None:
    outcome = ig.item_outcome(_item())
    assert outcome.status == "completed" and outcome.images == ("out.png",)
    assert set(outcome.produced) == {"src.png", "out.png"}


@pytest.mark.parametrize(
    ("error_type", "message", "kind", "code"),
    [
        ("Exception", "Unknown model abc", UnknownModelError, "unknown_model"),
        ("OutOfMemoryError", "CUDA out of memory", TransientTaskError, "transient_failure"),
        (
            "RuntimeError",
            "CUDA out of memory. Tried to allocate",
            TransientTaskError,
            "transient_failure",
        ),
        (
            "MissingInputException",
            "Node img_blur missing value",
            WorkflowExecutionError,
            "execution_error",
        ),
    ],
)
def test_failed_items_are_classified(error_type: str, message: str, kind: type, code: str) -> None:
    outcome = ig.item_outcome(_item("failed", error_type=error_type, error_message=message))
    failure = ig.failure(outcome)
    assert isinstance(failure, kind) and failure.code == code  # type: ignore[attr-defined]
    assert f"{error_type}: {message}" in str(failure)


def test_enqueue_422_is_summarised_with_field_paths() -> None:
    payload = {
        "detail": [
            {
                "loc": ["body", "batch", "graph", "nodes", "a"],
                "msg": "Input tag 'x' found " + "y" * 900,
            },
            {
                "loc": ["body", "batch", "graph"],
                "msg": "Value error, Edge destination node zz does not exist",
            },
        ]
    }
    error = ig.enqueue_error(422, payload, "")
    assert error.permanent and error.message.startswith("InvokeAI refused the graph (HTTP 422): ")
    assert "batch.graph.nodes.a: Input tag 'x'" in error.message and len(error.message) < 800
    assert "batch.graph: Value error, Edge destination node zz" in error.message


def test_tasktype_guard() -> None:
    with pytest.raises(InvalidTaskError, match="does not run 'pipeline'"):
        ig.shape(_task("pipeline", {"1": {}}), {"1": {}}, static_model="m")
    assert TaskType.INVOKEAI_GRAPH.value == "invokeai-graph"
