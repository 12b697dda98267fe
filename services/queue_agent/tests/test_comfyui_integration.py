"""The agent against the moto server and the ComfyUI emulator."""

from __future__ import annotations

import io
import json

import pytest
from agent_stack import Stack, task
from PIL import Image
from test_sdwebui_integration import _ImageServer

from sdq_contracts.keys import image_key, response_key
from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration


def _workflow(image: str) -> dict[str, object]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "mine/result"},
        },
    }


async def test_pipeline_with_uploaded_input_image(stack: Stack) -> None:
    async with _ImageServer() as images, running_emulator() as emu:
        stack.submit(
            task("wf", runtime="comfyui", tasktype="pipeline", content=_workflow(images.url))
        )
        assert await stack.run_burst("comfyui", emu.url) == 0
        requests = emu.state.stats.requests
    assert requests["POST /upload/image"] == 1
    [note] = stack.notifications(1)
    assert note["status"] == "completed" and note["_attributes"]["runtime"] == "comfyui"
    objects = stack.objects("itest/wf/")
    png = objects[image_key("itest", "wf", 1)]
    inverted = Image.open(io.BytesIO(png)).convert("RGB")
    assert inverted.size == (16, 16) and inverted.getpixel((0, 0)) == (0, 255, 255)  # red inverted
    history = json.loads(objects[response_key("itest", "wf")])["history"]
    [saved] = history["outputs"]["3"]["images"]
    assert saved["subfolder"].startswith("sdq/wf")


async def test_execution_error_is_a_failure_with_the_node_message(stack: Stack) -> None:
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    async with running_emulator(fail_next=1, fail_kind="execution_error") as emu:
        stack.submit(task("wf-err", runtime="comfyui", tasktype="pipeline", content=graph))
        assert await stack.run_burst("comfyui", emu.url) == 0
        started = emu.state.stats.comfyui.generations_started
    [note] = stack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "execution_error"
    message = note["error"]["message"]
    assert message.startswith("node 2 (SaveImage) failed: RuntimeError:") and "injected" in message
    assert started == 1
    assert stack.status("wf-err").status.value == "failed"
    assert stack.objects("itest/wf-err/") == {}


async def test_invalid_workflow_is_a_permanent_failure(stack: Stack) -> None:
    bad = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    async with running_emulator() as emu:
        stack.submit(task("wf-400", runtime="comfyui", tasktype="pipeline", content=bad))
        assert await stack.run_burst("comfyui", emu.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_rejected"
