"""SD WebUI behaviours the real v1.10.1 showed (issue 13), against the emulator that now
reproduces them: request errors answered 500, the guide's model switch, unknown scripts,
unnamed batch images, and the notification's ``output_url``."""

from __future__ import annotations

import base64
import io
import json

import pytest
from agent_stack import Stack, task
from PIL import Image

from sdq_contracts.keys import response_key
from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration


def _png_b64(size: int = 16) -> str:
    out = io.BytesIO()
    Image.new("RGB", (size, size), "blue").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_request_errors_answered_500_fail_once_permanently(stack: Stack) -> None:
    """``could not find upscaler named …`` and ``Invalid encoded image`` never pass on retry."""
    stack.submit(
        task(
            "upscaler",
            tasktype="extra-single-image",
            content={"image": _png_b64(), "upscaler_1": "4x-NoSuchUpscaler"},
        )
    )
    stack.submit(
        task(
            "badimage",
            tasktype="image-to-image",
            content={"prompt": "x", "init_images": ["bm90IGFuIGltYWdl"], "steps": 1},
        )
    )
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
        requests = dict(emu.state.stats.requests)
    notes = {n["id"]: n for n in stack.notifications(2)}
    upscaler, badimage = notes["upscaler"]["error"], notes["badimage"]["error"]
    assert upscaler["permanent"] is True and upscaler["code"] == "runtime_rejected"
    assert "could not find upscaler named 4x-NoSuchUpscaler" in upscaler["message"]
    assert badimage["permanent"] is True and "Invalid encoded image" in badimage["message"]
    # One attempt each: no retry, nothing dead-lettered.
    assert requests["POST /sdapi/v1/extra-single-image"] == 1
    assert requests["POST /sdapi/v1/img2img"] == 1
    assert stack.status("upscaler").attempts == 1 and stack.status("badimage").attempts == 1
    assert stack.dlq_bodies("sdruntime") == []


async def test_an_outage_503_stays_transient_and_the_retry_completes(stack: Stack) -> None:
    stack.submit(task("outage"))
    async with running_emulator(fail_next=1, fail_status=503) as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
        generations = emu.state.stats.requests["POST /sdapi/v1/txt2img"]
    [note] = stack.notifications(1)
    assert note["status"] == "completed"
    assert generations == 2 and stack.status("outage").attempts == 2


async def test_out_of_memory_500_stays_transient(stack: Stack) -> None:
    stack.submit(task("oom"))
    async with running_emulator(fail_next=1, fail_kind="execution_error") as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed" and stack.status("oom").attempts == 2


@pytest.mark.parametrize("runtime", ["sddynamic", "sdruntime"])
async def test_the_guides_alwayson_model_switch_becomes_the_model_override(
    stack: Stack, runtime: str
) -> None:
    """Real SD WebUI answers 422 ``Script 'sd_model_checkpoint' not found`` to this body."""
    model = "sd_xl_base_1.0.safetensors" if runtime == "sddynamic" else "v1-5-pruned-emaonly"
    content = {
        "prompt": "x",
        "width": 64,
        "height": 64,
        "steps": 1,
        "alwayson_scripts": {"sd_model_checkpoint": model},
    }
    stack.submit(task("guide", runtime=runtime, content=content))
    async with running_emulator() as emu:
        assert await stack.run_burst(runtime, emu.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed", note
    info = json.loads(
        json.loads(stack.objects("itest/guide/")[response_key("itest", "guide")])["info"]
    )
    assert info["sd_model_name"] == model.removesuffix(".safetensors")


async def test_unknown_alwayson_script_is_a_permanent_failure_naming_it(stack: Stack) -> None:
    content = {
        "prompt": "x",
        "width": 64,
        "height": 64,
        "alwayson_scripts": {"ControlNet": {"args": [{"enabled": True}]}, "seed": {"args": []}},
    }
    stack.submit(task("cn", content=content))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
        requests = dict(emu.state.stats.requests)
    [note] = stack.notifications(1)
    error = note["error"]
    assert (error["code"], error["permanent"]) == ("unknown_script", True)
    assert "'ControlNet'" in error["message"] and "seed" in error["message"]  # what it has
    assert "POST /sdapi/v1/txt2img" not in requests  # refused before generating
    assert requests["GET /sdapi/v1/scripts"] == 2  # listed once, then again before refusing


async def test_batch_images_without_names_get_names(stack: Stack) -> None:
    image = _png_b64()
    content = {
        "imageList": [{"data": image}, {"data": image, "name": "mine"}],
        "upscaling_resize": 2,
    }
    stack.submit(task("batch", tasktype="extra-batch-images", content=content))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed" and len(note["image_url"]) == 2


async def test_notification_output_url_is_the_out_object(stack: Stack) -> None:
    stack.submit(task("urls"))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url) == 0
    [note] = stack.notifications(1)
    bucket = stack.prov.output_bucket
    assert note["output_url"] == f"s3://{bucket}/{response_key('itest', 'urls')}"
    assert note["output_location"] == f"s3://{bucket}/itest/urls"
    assert response_key("itest", "urls") in stack.objects("itest/urls/")
