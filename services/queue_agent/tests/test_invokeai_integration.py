"""The agent against the moto server and the InvokeAI emulator (the case table of
invokeai_cases; test_invokeai_conformance runs the same cases against the real InvokeAI)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

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
from PIL import Image
from test_sdwebui_integration import _ImageServer

from sdq_contracts.keys import image_key, response_key
from sdq_runtime_emulator import running_emulator
from sdq_runtime_emulator.harness import RunningEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def istack(aws) -> Stack:  # type: ignore[no-untyped-def]
    return make_stack(aws.endpoint_url, CONFIG)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """The node cache: one checkpoint file (the emulator reads no weights)."""
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    (folder / STATIC_MODEL).write_bytes(b"emulated checkpoint")
    return tmp_path / "models"


@pytest.fixture
async def emu(models_dir: Path) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(models_dir=str(models_dir)) as running:
        yield running


def _invokeai(emu: RunningEmulator):  # type: ignore[no-untyped-def]
    """The emulator's InvokeAI half (its queue, image store and model manager)."""
    for route in emu.app.router.routes():
        handler = getattr(route.handler, "__self__", None)
        if type(handler).__name__ == "InvokeAi":
            return handler
    raise AssertionError("the emulator has no InvokeAI routes")


async def _burst(stack: Stack, runtime: str, emu: RunningEmulator, models_dir: Path) -> int:
    return await stack.run_burst(
        runtime, emu.url, runtime_models_dir=str(models_dir), cancel_poll_seconds=0.2
    )


async def test_text_to_image_static_model_images_in_s3_and_removed_from_invokeai(
    istack: Stack, emu: RunningEmulator, models_dir: Path
) -> None:
    content = {"prompt": "a lighthouse", "width": 64, "height": 48, "batch_size": 2, "seed": 7}
    istack.submit(task("t2i", runtime="invokeai-static", content=content))
    assert await _burst(istack, "invokeai-static", emu, models_dir) == 0
    objects = istack.objects("itest/t2i/")
    assert set(objects) == {
        image_key("itest", "t2i", 1),
        image_key("itest", "t2i", 2),
        response_key("itest", "t2i"),
    }
    first, second = (Image.open(io.BytesIO(objects[image_key("itest", "t2i", n)])) for n in (1, 2))
    assert first.size == second.size == (64, 48)
    assert first.tobytes() != second.tobytes()  # two seeds, two pictures
    out = json.loads(objects[response_key("itest", "t2i")])
    assert len(out["item_ids"]) == 2 and all(i["status"] == "completed" for i in out["items"])
    [note] = istack.notifications(1)
    assert note["status"] == "completed" and len(note["image_url"]) == 2
    assert note["_attributes"] == {"runtime": "invokeai-static", "status": "completed"}
    invokeai = _invokeai(emu)
    # The static model was installed by path from the node cache, once.
    [record] = [r for r in invokeai.records.values() if not r["key"].startswith("builtin-")]
    assert record["source"] == str(models_dir / "Stable-diffusion" / STATIC_MODEL)
    # Once in S3, the task's images and queue items are gone from InvokeAI.
    assert invokeai.images == {} and invokeai.items == {}
    requests = emu.state.stats.requests
    assert requests["DELETE /api/v1/images/i/{image_name}"] == 2
    assert requests["DELETE /api/v1/queue/{queue_id}/i/{item_id}"] == 2


async def test_image_to_image_with_url_and_base64_inputs_uploaded(
    istack: Stack, emu: RunningEmulator, models_dir: Path
) -> None:
    model = {"sd_model_checkpoint": STATIC_MODEL}
    async with _ImageServer() as images:
        istack.submit(
            task(
                "i2i-url",
                runtime="invokeai",
                tasktype="image-to-image",
                content={
                    "prompt": "as a watercolour",
                    "init_images": [images.url],
                    "width": 32,
                    "height": 40,
                    "denoising_strength": 0.5,
                    "override_settings": model,
                },
            )
        )
        istack.submit(
            task(
                "i2i-b64",
                runtime="invokeai",
                tasktype="image-to-image",
                content={
                    "prompt": "x",
                    "init_images": [base64.b64encode(png()).decode()],
                    "override_settings": model,
                    "width": 16,
                    "height": 16,
                },
            )
        )
        assert await _burst(istack, "invokeai", emu, models_dir) == 0
    assert emu.state.stats.requests["POST /api/v1/images/upload"] == 2
    notes = {n["id"]: n for n in istack.notifications(2)}
    assert {n["status"] for n in notes.values()} == {"completed"}
    url_png = istack.objects("itest/i2i-url/")[image_key("itest", "i2i-url", 1)]
    assert Image.open(io.BytesIO(url_png)).size == (32, 40)
    b64_png = istack.objects("itest/i2i-b64/")[image_key("itest", "i2i-b64", 1)]
    assert Image.open(io.BytesIO(b64_png)).size == (16, 16)
    assert _invokeai(emu).images == {}  # outputs and the uploaded inputs are deleted


async def test_raw_graph_with_data_uri_input(
    istack: Stack, emu: RunningEmulator, models_dir: Path
) -> None:
    graph = weight_free_graph({"image_name": data_uri(png(24, 16, "red"))})
    istack.submit(task("graph", runtime="invokeai", tasktype="invokeai-graph", content=graph))
    assert await _burst(istack, "invokeai", emu, models_dir) == 0
    [note] = istack.notifications(1)
    assert note["status"] == "completed" and len(note["image_url"]) == 1
    out = Image.open(io.BytesIO(istack.objects("itest/graph/")[image_key("itest", "graph", 1)]))
    assert out.size == (48, 32)  # resized (intermediate), then blurred (the one output)
    assert out.convert("RGB").getpixel((24, 16)) == (255, 0, 0)


async def test_invalid_graph_fails_permanently_with_invokeai_detail(
    istack: Stack, emu: RunningEmulator, models_dir: Path
) -> None:
    istack.submit(task("bad", runtime="invokeai", tasktype="invokeai-graph", content=INVALID_GRAPH))
    assert await _burst(istack, "invokeai", emu, models_dir) == 0
    [note] = istack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_rejected"
    assert "HTTP 422" in note["error"]["message"]
    assert "sdq_no_such_node" in note["error"]["message"]
    assert istack.status("bad").attempts == 1  # permanent: not retried
    assert istack.dlq_bodies("invokeai") == []


async def test_missing_model_fails_permanently_naming_it(
    istack: Stack, emu: RunningEmulator, models_dir: Path
) -> None:
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
    assert await _burst(istack, "invokeai", emu, models_dir) == 0
    notes = {n["id"]: n for n in istack.notifications(2)}
    for task_id in ("nomodel-t2i", "nomodel-graph"):
        assert notes[task_id]["status"] == "failed"
        assert notes[task_id]["error"]["code"] == "unknown_model"
        assert MISSING_MODEL in notes[task_id]["error"]["message"]
    assert emu.state.stats.requests["POST /api/v1/queue/{queue_id}/enqueue_batch"] == 0


async def test_cancel_while_generating_cancels_the_queue_item(
    istack: Stack, models_dir: Path
) -> None:
    async with running_emulator(models_dir=str(models_dir), hang_next=1) as emu:
        content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": STATIC_MODEL}}
        istack.submit(task("cancel-me", runtime="invokeai", content=content))
        invokeai = _invokeai(emu)
        agent = asyncio.create_task(_burst(istack, "invokeai", emu, models_dir))

        async def in_progress() -> bool:
            return any(i.status == "in_progress" for i in invokeai.items.values())

        await wait_for(in_progress)
        istack.client("dynamodb").update_item(
            TableName=istack.prov.status_table,
            Key={"id": {"S": "cancel-me"}},
            UpdateExpression="SET cancel_requested = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )
        assert await agent == 0
        stats = emu.state.stats.invokeai
    assert stats.interrupts == 1 and stats.generations_interrupted == 1
    [note] = istack.notifications(1)
    assert note["status"] == "cancelled"
    assert istack.status("cancel-me").status.value == "cancelled"
    assert invokeai.items == {}  # the canceled item is removed too


async def test_execution_error_is_a_failure_with_the_error_type(
    istack: Stack, models_dir: Path
) -> None:
    async with running_emulator(
        models_dir=str(models_dir), fail_next=1, fail_kind="execution_error"
    ) as emu:
        content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": STATIC_MODEL}}
        istack.submit(task("exec-err", runtime="invokeai", content=content))
        assert await _burst(istack, "invokeai", emu, models_dir) == 0
    [note] = istack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "execution_error"
    assert "RuntimeError: sdq runtime emulator: injected" in note["error"]["message"]


async def test_agent_refuses_to_start_without_the_static_model(
    istack: Stack, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    async with running_emulator(models_dir=str(empty)) as emu:
        code = await istack.run_burst("invokeai-static", emu.url, runtime_models_dir=str(empty))
    assert code == 1


async def test_runtime_restart_forgetting_an_installed_model_is_transient(
    emu: RunningEmulator, models_dir: Path
) -> None:
    """The adapter alone against the emulator: the model manager loses the model it installed
    (InvokeAI restarted with a fresh root); that attempt is retried, the next re-installs."""
    import aiohttp

    from sdq_contracts.messages import TaskMessage
    from sdq_queue_agent.adapters.invokeai import InvokeAiRuntime
    from sdq_queue_agent.errors import TransientTaskError

    task_msg = TaskMessage.model_validate(
        {"id": "r1", "runtime": "invokeai-static", "tasktype": "text-to-image", "content": {}}
    )
    async with aiohttp.ClientSession() as session:
        runtime = InvokeAiRuntime(
            session, emu.url, static_model=STATIC_MODEL, models_dir=str(models_dir)
        )
        await runtime.startup_check()
        invokeai = _invokeai(emu)
        installed = [k for k in invokeai.records if not k.startswith("builtin-")]
        assert len(installed) == 1
        del invokeai.records[installed[0]]  # the "restart"
        request = runtime.prepare(task_msg, {"prompt": "x", "width": 16, "height": 16})
        with pytest.raises(TransientTaskError, match="no longer has model key"):
            await runtime.run(request)
        result = await runtime.run(request)
    assert len(result.files) == 1
    assert len([k for k in invokeai.records if not k.startswith("builtin-")]) == 1
