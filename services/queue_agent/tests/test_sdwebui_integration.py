"""The agent against the moto server and the SD WebUI emulator."""

from __future__ import annotations

import base64
import io
import json

import pytest
from agent_stack import Stack, task
from PIL import Image

from sdq_contracts.keys import image_key, response_key
from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration


def _png(size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), "red").save(out, format="PNG")
    return out.getvalue()


async def test_text_to_image_produces_objects_status_and_one_notification(stack: Stack) -> None:
    stack.submit(task("t2i", content={"prompt": "x", "width": 64, "height": 64, "batch_size": 2}))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
    objects = stack.objects("itest/t2i/")
    assert set(objects) == {
        image_key("itest", "t2i", 1),
        image_key("itest", "t2i", 2),
        response_key("itest", "t2i"),
    }
    assert Image.open(io.BytesIO(objects[image_key("itest", "t2i", 1)])).size == (64, 64)
    out = json.loads(objects[response_key("itest", "t2i")])
    assert out["images"] == ["<output 1>", "<output 2>"] and "info" in out
    [note] = stack.notifications(1)
    assert note["status"] == "completed" and note["result"] is True
    assert note["_attributes"] == {"runtime": "sdruntime", "status": "completed"}
    assert len(note["image_url"]) == 2
    record = stack.status("t2i")
    assert record.status.value == "completed" and record.attempts == 1 and len(record.outputs) == 2
    raw = stack.client("dynamodb").get_item(
        TableName=stack.prov.status_table, Key={"id": {"S": "t2i"}}
    )
    # the message that ended the task is recorded, and the mark its delete batch wrote
    assert "S" in raw["Item"]["settled_by"] and raw["Item"]["announced"] == {"BOOL": True}


class _ImageServer:
    """A 127.0.0.1 HTTP server (allow-listed like the local stack) serving one PNG."""

    def __init__(self) -> None:
        self.png = _png()
        self.url = ""
        self._runner: object = None

    async def __aenter__(self) -> _ImageServer:
        from aiohttp import web

        async def image(_: web.Request) -> web.Response:
            return web.Response(body=self.png, content_type="image/png")

        app = web.Application()
        app.router.add_get("/img.png", image)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/img.png"
        self._runner = runner
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()  # type: ignore[attr-defined]


async def test_every_sdwebui_task_type_with_url_inputs(stack: Stack) -> None:
    async with _ImageServer() as images, running_emulator() as emu:
        stack.submit(
            task(
                "i2i",
                tasktype="image-to-image",
                content={"prompt": "x", "init_images": [images.url], "width": 64, "height": 64},
            )
        )
        stack.submit(
            task(
                "single",
                tasktype="extra-single-image",
                content={"image": images.url, "upscaling_resize": 2, "upscaler_1": "Lanczos"},
            )
        )
        stack.submit(
            task(
                "batch",
                tasktype="extra-batch-images",
                content={
                    "imageList": [
                        {"data": images.url, "name": "a"},
                        {"data": base64.b64encode(images.png).decode(), "name": "b"},
                    ],
                    "upscaling_resize": 2,
                    "upscaler_1": "Nearest",
                },
            )
        )
        legacy = {
            "prompt": "",
            "upscaling_resize": 2,
            "upscaler_1": "Lanczos",
            "alwayson_scripts": {
                "task": "extra-single-image",
                "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors",
                "id_task": "legacy",
                "image_link": images.url,
                "save_dir": "itest",
            },
        }
        stack.submit(
            task(
                "legacy",
                tasktype="extra-single-image",
                api_version="v1alpha1",
                content=legacy,
                sd_model_checkpoint="v1-5-pruned-emaonly.safetensors",
            )
        )
        assert await stack.run_burst("sdruntime", emu.url) == 0
        requests = emu.state.stats.requests
    notes = {n["id"]: n for n in stack.notifications(4)}
    assert {k: v["status"] for k, v in notes.items()} == dict.fromkeys(
        ["i2i", "single", "batch", "legacy"], "completed"
    )
    assert len(notes["batch"]["image_url"]) == 2
    upscaled = stack.objects("itest/single/")[image_key("itest", "single", 1)]
    assert Image.open(io.BytesIO(upscaled)).size == (32, 32)
    assert Image.open(
        io.BytesIO(stack.objects("itest/legacy/")[image_key("itest", "legacy", 1)])
    ).size == (32, 32)
    assert (
        requests["POST /sdapi/v1/img2img"] == 1
        and requests["POST /sdapi/v1/extra-batch-images"] == 1
    )


async def test_dynamic_model_switch_and_unknown_model(stack: Stack) -> None:
    stack.submit(task("xl", runtime="sddynamic", sd_model_checkpoint="sd_xl_base_1.0.safetensors"))
    stack.submit(task("nope", runtime="sddynamic", sd_model_checkpoint="no-such-model.safetensors"))
    async with running_emulator() as emu:
        assert await stack.run_burst("sddynamic", emu.url) == 0
        switches = emu.state.stats.sdwebui.model_switches
        started = emu.state.stats.sdwebui.generations_started
    notes = {n["id"]: n for n in stack.notifications(2)}
    assert notes["xl"]["status"] == "completed"
    assert notes["nope"]["status"] == "failed"
    assert notes["nope"]["error"]["code"] == "unknown_model"
    assert switches >= 1 and started == 1
    assert (
        "sd_xl_base_1.0"
        in json.loads(stack.objects("itest/xl/")[response_key("itest", "xl")])["info"]
    )


async def test_permanent_failure_one_failed_notification_no_retry(stack: Stack) -> None:
    stack.submit(task("bad"))
    async with running_emulator(fail_next=1, fail_status=422) as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
        started = emu.state.stats.requests["POST /sdapi/v1/txt2img"]
    [note] = stack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_rejected"
    assert note["error"]["permanent"] is True and "422" in note["error"]["message"]
    assert started == 1
    assert stack.status("bad").status.value == "failed"
    assert stack.dlq_bodies("sdruntime") == []


async def test_job_three_times_longer_than_visibility_runs_once(stack: Stack) -> None:
    stack.submit(task("long"))
    async with running_emulator(generation_latency_s=6.0) as emu:
        assert await stack.run_burst("sdruntime", emu.url, visibility_seconds=2) == 0
        started = emu.state.stats.sdwebui.generations_started
    assert started == 1
    [note] = stack.notifications(1)
    assert note["status"] == "completed"
    assert stack.status("long").attempts == 1


async def test_poison_message_dead_letters_and_next_task_completes(stack: Stack) -> None:
    stack.send_raw("sdruntime", "definitely { not json")
    stack.submit(task("after-poison"))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
    assert stack.dlq_bodies("sdruntime") == ["definitely { not json"]
    [note] = stack.notifications(1)
    assert note["id"] == "after-poison" and note["status"] == "completed"
