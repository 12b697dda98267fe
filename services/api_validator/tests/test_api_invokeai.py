"""The API with InvokeAI runtimes configured: task types, models, raw graphs, v1alpha1 routing."""

from __future__ import annotations

import copy
import json

import pytest

from sdq_contracts import parse_config
from sdq_contracts.messages import TaskMessage

pytestmark = pytest.mark.unit

CONFIG = {
    "stack_name": "sdq",
    "region": "us-west-2",
    "buckets": {"models": "m-bucket", "outputs": "o-bucket"},
    "runtimes": [
        {"name": "comfyui", "type": "comfyui", "dynamic_model": True},
        {"name": "invokeai", "type": "invokeai", "dynamic_model": True},
        {"name": "invokeai-static", "type": "invokeai", "model": "dreamshaper_8.safetensors"},
    ],
}


@pytest.fixture
def ih(make_harness):  # type: ignore[no-untyped-def]
    return make_harness(parse_config(CONFIG))


@pytest.fixture
def graph_body(repo_root):  # type: ignore[no-untyped-def]
    return json.loads((repo_root / "tests/examples/v1alpha2-invokeai-graph.json").read_text())


def _task(runtime: str, tasktype: str, content: dict) -> dict:  # type: ignore[type-arg]
    return {"task": {"metadata": {"runtime": runtime, "tasktype": tasktype}, "content": content}}


def test_invokeai_graph_example_is_queued(ih, graph_body) -> None:  # type: ignore[no-untyped-def]
    status, answer, _ = ih.call("POST", "/v1alpha2", graph_body)
    assert status == 202 and answer["runtime"] == "invokeai"
    [(message, attributes)] = ih.publisher.published
    parsed = TaskMessage.model_validate(message)
    assert parsed.tasktype.value == "invokeai-graph" and attributes["tasktype"] == "invokeai-graph"
    assert parsed.content == graph_body["task"]["content"]


def test_text_to_image_names_its_model_on_a_dynamic_invokeai_runtime(ih) -> None:  # type: ignore[no-untyped-def]
    status, answer, _ = ih.call(
        "POST", "/v1alpha2", _task("invokeai", "text-to-image", {"prompt": "x"})
    )
    assert status == 400
    assert answer["error"]["field"] == "task.content.override_settings.sd_model_checkpoint"
    assert ih.publisher.published == []
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "a.safetensors"}}
    status, _, _ = ih.call("POST", "/v1alpha2", _task("invokeai", "text-to-image", content))
    assert status == 202
    [(message, _)] = ih.publisher.published
    assert message["sd_model_checkpoint"] == "a.safetensors"


def test_static_invokeai_runtime_refuses_another_model(ih) -> None:  # type: ignore[no-untyped-def]
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "other.ckpt"}}
    status, answer, _ = ih.call(
        "POST", "/v1alpha2", _task("invokeai-static", "text-to-image", content)
    )
    assert (status, answer["error"]["code"]) == (400, "unknown_model")
    status, _, _ = ih.call(
        "POST", "/v1alpha2", _task("invokeai-static", "text-to-image", {"prompt": "x"})
    )
    assert status == 202


@pytest.mark.parametrize(
    ("runtime", "tasktype", "accepted"),
    [
        ("invokeai", "pipeline", "image-to-image, invokeai-graph, text-to-image"),
        ("invokeai", "extra-single-image", "image-to-image, invokeai-graph, text-to-image"),
        ("comfyui", "invokeai-graph", "pipeline"),
    ],
)
def test_task_types_are_kept_apart(ih, runtime, tasktype, accepted) -> None:  # type: ignore[no-untyped-def]
    status, answer, _ = ih.call("POST", "/v1alpha2", _task(runtime, tasktype, {"x": 1}))
    assert (status, answer["error"]["code"]) == (400, "unsupported_tasktype")
    assert answer["error"]["message"].endswith(f"it accepts: {accepted}")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["graph"]["nodes"].clear(), "task.content.graph.nodes"),
        (lambda c: c["graph"]["nodes"]["noise"].pop("type"), "task.content.graph.nodes.noise.type"),
        (
            lambda c: c["graph"]["edges"][0]["source"].update(node_id="gone"),
            "task.content.graph.edges[0].source",
        ),
        (lambda c: c.update(runs=0), "task.content.runs"),
        (
            lambda c: c["graph"]["nodes"]["output"].update(
                image={"image_name": "file:///etc/passwd"}
            ),
            "task.content.graph.nodes.output.image.image_name",
        ),
    ],
)
def test_invalid_graphs_name_the_field(ih, graph_body, mutate, field) -> None:  # type: ignore[no-untyped-def]
    body = copy.deepcopy(graph_body)
    mutate(body["task"]["content"])
    status, answer, _ = ih.call("POST", "/v1alpha2", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    assert ih.publisher.published == []


def test_a_wrapped_batch_and_a_bare_graph_are_accepted(ih, graph_body) -> None:  # type: ignore[no-untyped-def]
    content = graph_body["task"]["content"]
    for variant in ({"batch": content, "prepend": False}, content["graph"]):
        status, _, _ = ih.call("POST", "/v1alpha2", _task("invokeai", "invokeai-graph", variant))
        assert status == 202


def test_v1alpha1_routes_by_model_to_invokeai_for_generation_only(ih, repo_root) -> None:  # type: ignore[no-untyped-def]
    body = json.loads((repo_root / "tests/examples/v1alpha1-text-to-image.json").read_text())
    body["alwayson_scripts"]["sd_model_checkpoint"] = "dreamshaper_8.safetensors"
    status, answer, _ = ih.call("POST", "/v1alpha1", body)
    assert status == 202
    [(message, _)] = ih.publisher.published
    assert message["runtime"] == "invokeai-static"
    body["alwayson_scripts"].update(sd_model_checkpoint="other.safetensors", id_task="v1-2")
    status, _, _ = ih.call("POST", "/v1alpha1", body)
    assert status == 202
    assert ih.publisher.published[-1][0]["runtime"] == "invokeai"  # the dynamic one
    body["alwayson_scripts"].update(
        task="extra-single-image", id_task="v1-3", image_link="https://x/y.png"
    )
    status, answer, _ = ih.call("POST", "/v1alpha1", body)
    assert (status, answer["error"]["code"]) == (400, "unknown_model")
