"""The agent against the moto server and the REAL InvokeAI 6.14.2 (CPU build), the same cases
as test_invokeai_integration runs against the emulator.

Recorded fact (InvokeAI 6.14.2): its model manager does not accept the tiny random-weight SD1.5
checkpoint as a main model. Installed by path it becomes base/type/format ``unknown``, because
``Main_Checkpoint_SD1_Config`` tells SD1 from SD2 by the width of
``model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight`` (768 → SD1),
a block the one-level tiny UNet does not have ("unable to determine base type from state
dict"); the check cannot be overridden by the install's config. So text-to-image and
image-to-image with that checkpoint end as a permanent failure naming the refusal (asserted
below). Model-based generation is tested with a tiny random-weight SD1.5 pipeline in diffusers
format instead (runtime_side/make_tiny_diffusers.py), which the model manager accepts as
``sd-1``/``main``; the other generating cases use weight-free graphs (blank image, resize, blur).
"""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from agent_stack import Stack, make_stack, task
from invokeai_cases import (
    CONFIG,
    INVALID_GRAPH,
    MISSING_MODEL,
    STATIC_MODEL,
    data_uri,
    missing_model_graph,
    png,
    wait_for,
    weight_free_graph,
)
from invokeai_real import (
    TINY_DIFFUSERS,
    RealInvokeAi,
    build_entry,
    required,
    tiny_checkpoint,
    tiny_diffusers_model,
)
from PIL import Image
from test_sdwebui_integration import _ImageServer

from sdq_contracts.keys import image_key, response_key

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(900)]  # a real runtime generates


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealInvokeAi]:
    entry = build_entry()
    base = tmp_path_factory.mktemp("invokeai")
    models = base / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    checkpoint = tiny_checkpoint()
    if checkpoint is not None:
        (models / "Stable-diffusion" / STATIC_MODEL).symlink_to(checkpoint)
    diffusers_model = tiny_diffusers_model(entry)
    if diffusers_model is not None:
        (models / "Stable-diffusion" / TINY_DIFFUSERS).symlink_to(diffusers_model)
    runtime = RealInvokeAi(entry, base / "root", models, base / "invokeai.log")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def istack(aws) -> Stack:  # type: ignore[no-untyped-def]
    return make_stack(aws.endpoint_url, CONFIG)


async def _burst(stack: Stack, real: RealInvokeAi, runtime: str = "invokeai") -> int:
    return await stack.run_burst(
        runtime,
        real.url,
        timeout=180,
        runtime_models_dir=str(real.models_dir),
        cancel_poll_seconds=0.2,
        readiness_timeout_seconds=60,
    )


def _near(pixel: Any, expected: tuple[int, int, int]) -> bool:
    """InvokeAI blurs in RGBA: a flat colour may come back one step off."""
    return all(abs(a - b) <= 2 for a, b in zip(pixel, expected, strict=True))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


async def test_weight_free_graph_images_in_s3_and_removed_from_invokeai(
    istack: Stack, real: RealInvokeAi
) -> None:
    istack.submit(
        task("g1", runtime="invokeai", tasktype="invokeai-graph", content=weight_free_graph())
    )
    assert await _burst(istack, real) == 0
    [note] = istack.notifications(1)
    assert note["status"] == "completed", note
    objects = istack.objects("itest/g1/")
    picture = Image.open(io.BytesIO(objects[image_key("itest", "g1", 1)])).convert("RGB")
    assert picture.size == (40, 24) and _near(picture.getpixel((20, 12)), (0, 0, 255))
    out = json.loads(objects[response_key("itest", "g1")])
    [item] = out["items"]
    assert item["status"] == "completed" and len(item["images"]) == 1
    # Once in S3 the output image and the queue item are gone from InvokeAI.
    assert _get(f"{real.url}/api/v1/images/i/{item['images'][0]}/full")[0] == 404
    assert _get(f"{real.url}/api/v1/queue/default/i/{item['item_id']}")[0] == 404


async def test_graph_with_url_and_data_uri_inputs_uploaded(
    istack: Stack, real: RealInvokeAi
) -> None:
    async with _ImageServer() as images:
        istack.submit(
            task(
                "g-url",
                runtime="invokeai",
                tasktype="invokeai-graph",
                content=weight_free_graph({"image_name": images.url}),
            )
        )
        istack.submit(
            task(
                "g-data",
                runtime="invokeai",
                tasktype="invokeai-graph",
                content=weight_free_graph({"image_name": data_uri(png(24, 16, "red"))}),
            )
        )
        assert await _burst(istack, real) == 0
    notes = {n["id"]: n for n in istack.notifications(2)}
    assert {n["status"] for n in notes.values()} == {"completed"}, notes
    for task_id in ("g-url", "g-data"):
        data = istack.objects(f"itest/{task_id}/")[image_key("itest", task_id, 1)]
        picture = Image.open(io.BytesIO(data)).convert("RGB")
        assert picture.size == (48, 32) and _near(picture.getpixel((24, 16)), (255, 0, 0))


async def test_invalid_graph_fails_permanently(istack: Stack, real: RealInvokeAi) -> None:
    istack.submit(task("bad", runtime="invokeai", tasktype="invokeai-graph", content=INVALID_GRAPH))
    assert await _burst(istack, real) == 0
    [note] = istack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_rejected"
    assert "HTTP 422" in note["error"]["message"]
    assert "sdq_no_such_node" in note["error"]["message"]
    assert istack.status("bad").attempts == 1


async def test_missing_model_fails_permanently_naming_it(istack: Stack, real: RealInvokeAi) -> None:
    istack.submit(
        task(
            "nomodel-t2i",
            runtime="invokeai",
            content={"prompt": "x", "override_settings": {"sd_model_checkpoint": MISSING_MODEL}},
        )
    )
    istack.submit(
        task(
            "nomodel-graph",
            runtime="invokeai",
            tasktype="invokeai-graph",
            content=missing_model_graph(),
        )
    )
    assert await _burst(istack, real) == 0
    notes = {n["id"]: n for n in istack.notifications(2)}
    for task_id in ("nomodel-t2i", "nomodel-graph"):
        assert notes[task_id]["status"] == "failed"
        assert notes[task_id]["error"]["code"] == "unknown_model"
        assert MISSING_MODEL in notes[task_id]["error"]["message"]


async def test_cancel_while_running_cancels_the_queue_item(
    istack: Stack, real: RealInvokeAi
) -> None:
    # A weight-free graph that runs for tens of seconds on a CPU: 30 wide blurs of a big image.
    nodes: dict[str, Any] = {
        "source": {"type": "blank_image", "width": 2048, "height": 2048, "is_intermediate": True}
    }
    edges: list[dict[str, Any]] = []
    previous = "source"
    for n in range(30):
        node = f"blur{n}"
        nodes[node] = {"type": "img_blur", "radius": 40, "is_intermediate": n < 29}
        edges.append(
            {
                "source": {"node_id": previous, "field": "image"},
                "destination": {"node_id": node, "field": "image"},
            }
        )
        previous = node
    graph = {"graph": {"nodes": nodes, "edges": edges}}
    istack.submit(task("cancel-me", runtime="invokeai", tasktype="invokeai-graph", content=graph))
    agent = asyncio.create_task(_burst(istack, real))

    async def in_progress() -> bool:
        status, body = await asyncio.to_thread(_get, f"{real.url}/api/v1/queue/default/status")
        return status == 200 and json.loads(body)["queue"]["in_progress"] == 1

    await wait_for(in_progress, timeout=60)
    istack.client("dynamodb").update_item(
        TableName=istack.prov.status_table,
        Key={"id": {"S": "cancel-me"}},
        UpdateExpression="SET cancel_requested = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    assert await agent == 0
    [note] = istack.notifications(1)
    assert note["status"] == "cancelled"
    _status, body = await asyncio.to_thread(_get, f"{real.url}/api/v1/queue/default/status")
    counts = json.loads(body)["queue"]
    assert counts["in_progress"] == 0 and counts["pending"] == 0


async def test_tiny_checkpoint_is_refused_by_the_model_manager(
    istack: Stack, real: RealInvokeAi
) -> None:
    if not (real.models_dir / "Stable-diffusion" / STATIC_MODEL).exists():
        message = "no tiny-sd15-random-v*.safetensors in the runtime cache (the conformance suite makes it)"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    model = {"sd_model_checkpoint": STATIC_MODEL}
    istack.submit(
        task("tiny-t2i", runtime="invokeai", content={"prompt": "x", "override_settings": model})
    )
    istack.submit(
        task(
            "tiny-i2i",
            runtime="invokeai",
            tasktype="image-to-image",
            content={"prompt": "x", "init_images": [data_uri(png())], "override_settings": model},
        )
    )
    assert await _burst(istack, real) == 0
    notes = {n["id"]: n for n in istack.notifications(2)}
    for task_id in ("tiny-t2i", "tiny-i2i"):
        error = notes[task_id]["error"]
        assert notes[task_id]["status"] == "failed" and error["code"] == "runtime_rejected"
        assert f"identifies {STATIC_MODEL!r}" in error["message"]
        assert "as a 'unknown' model" in error["message"]
    # A runtime configured with that static model refuses to start (nothing it could run).
    assert await _burst(istack, real, runtime="invokeai-static") == 1


def _request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.parametrize("tasktype", ["text-to-image", "image-to-image"])
async def test_translated_graphs_pass_invokeais_own_validation(
    real: RealInvokeAi, tasktype: str
) -> None:
    """The graphs sdq builds from SD WebUI-style content are valid InvokeAI graphs: enqueue
    accepts them (a wrong node type, field or edge is a 422) and they run up to the model
    loader, which fails only because the model key is not installed (no usable weights here)."""
    from sdq_contracts.requests import TaskType
    from sdq_queue_agent.domain import invokeai_graph

    content: dict[str, Any] = {
        "prompt": "a fox",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "steps": 2,
        "sampler_name": "DPM++ 2M Karras",
        "batch_size": 2,
    }
    if tasktype == "image-to-image":
        content |= {"init_images": [data_uri(png())], "denoising_strength": 0.5}
    request = invokeai_graph.translate("conf-1", TaskType(tasktype), content, "m.safetensors")
    body = request.body
    nodes = body["batch"]["graph"]["nodes"]
    fake = {
        "key": "sdq-not-installed",
        "hash": "random:0",
        "name": "m",
        "base": "sd-1",
        "type": "main",
    }
    nodes[invokeai_graph.MODEL_NODE]["model"] = fake
    if request.inputs:
        boundary = "sdqboundary"
        form = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + png()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, dto = await asyncio.to_thread(
            _request,
            "POST",
            f"{real.url}/api/v1/images/upload?image_category=user&is_intermediate=true",
            form,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert status == 201, dto
        nodes[invokeai_graph.INIT_NODE]["image"] = {"image_name": dto["image_name"]}
    status, answer = await asyncio.to_thread(
        _request,
        "POST",
        f"{real.url}/api/v1/queue/default/enqueue_batch",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, answer
    assert len(answer["item_ids"]) == 2  # one queue item per image, seeds from batch data

    async def finished() -> bool:
        for item_id in answer["item_ids"]:
            _, item = await asyncio.to_thread(
                _request, "GET", f"{real.url}/api/v1/queue/default/i/{item_id}"
            )
            if item["status"] not in ("completed", "failed", "canceled"):
                return False
        return True

    await wait_for(finished, timeout=120, interval=0.2)
    for item_id in answer["item_ids"]:
        _, item = await asyncio.to_thread(
            _request, "GET", f"{real.url}/api/v1/queue/default/i/{item_id}"
        )
        assert (item["status"], item.get("error_type")) == ("failed", "Exception"), {
            k: item.get(k) for k in ("status", "error_type", "error_message", "item_id")
        }
        assert item["error_message"] == "Unknown model sdq-not-installed"
        # The seeds went in as batch data, one per item.
        [value] = item["field_values"]
        assert (value["node_path"], value["field_name"]) == (invokeai_graph.NOISE_NODE, "seed")


async def test_text_and_image_to_image_with_a_tiny_diffusers_model(
    istack: Stack, real: RealInvokeAi
) -> None:
    """Model-based generation for real: a tiny random-weight SD1.5 pipeline in diffusers format,
    which InvokeAI's model manager does accept, installed by path from the node cache."""
    if not (real.models_dir / "Stable-diffusion" / TINY_DIFFUSERS).exists():
        message = "no CLIP tokenizer cache to build the tiny diffusers model from"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    model = {"sd_model_checkpoint": TINY_DIFFUSERS}
    common = {"prompt": "a red fox", "steps": 2, "seed": 3, "override_settings": model}
    istack.submit(
        task(
            "real-t2i",
            runtime="invokeai",
            content=common | {"width": 64, "height": 48, "batch_size": 2},
        )
    )
    istack.submit(
        task(
            "real-i2i",
            runtime="invokeai",
            tasktype="image-to-image",
            content=common
            | {
                "init_images": [data_uri(png(32, 32))],
                "width": 64,
                "height": 64,
                "denoising_strength": 0.6,
            },
        )
    )
    assert await _burst(istack, real) == 0
    notes = {n["id"]: n for n in istack.notifications(2)}
    assert {n["status"] for n in notes.values()} == {"completed"}, notes
    t2i = istack.objects("itest/real-t2i/")
    sizes = [Image.open(io.BytesIO(t2i[image_key("itest", "real-t2i", n)])).size for n in (1, 2)]
    assert sizes == [(64, 48), (64, 48)]
    i2i = istack.objects("itest/real-i2i/")[image_key("itest", "real-i2i", 1)]
    assert Image.open(io.BytesIO(i2i)).size == (64, 64)
    out = json.loads(istack.objects("itest/real-i2i/")[response_key("itest", "real-i2i")])
    [item] = out["items"]
    assert _get(f"{real.url}/api/v1/images/i/{item['images'][0]}/full")[0] == 404  # cleaned up
