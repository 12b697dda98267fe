"""ComfyUI behaviours the real v0.8.0 (and newer releases) showed (issue 13), against the
emulator that now reproduces them."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from agent_stack import Stack, task
from PIL import Image

from sdq_contracts.keys import image_key
from sdq_queue_agent.domain.model import OutputFile
from sdq_runtime_emulator import running_emulator, workflows

pytestmark = pytest.mark.integration


def _png_b64(size: int = 16) -> str:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (255, 0, 0)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _pipeline(task_id: str, graph: dict[str, object]):  # type: ignore[no-untyped-def]
    return task(task_id, runtime="comfyui", tasktype="pipeline", content=graph)


async def test_plain_base64_load_image_is_uploaded(stack: Stack) -> None:
    """The README promises base64 inputs; ComfyUI itself takes the string as a file name."""
    stack.submit(_pipeline("b64", workflows.load_invert_save(_png_b64(), filename_prefix="inv")))
    async with running_emulator() as emu:
        assert await stack.run_burst("comfyui", emu.url) == 0
        uploads = emu.state.stats.requests["POST /upload/image"]
    [note] = stack.notifications(1)
    assert note["status"] == "completed", note
    assert uploads == 1
    png = stack.objects("itest/b64/")[image_key("itest", "b64", 1)]
    assert Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0)) == (0, 255, 255)


async def test_a_workflow_with_one_invalid_output_fails_and_names_it(stack: Stack) -> None:
    """ComfyUI answers 200 with node_errors and would run only the valid output."""
    graph = workflows.hires_upscale("x", width=64, height=64)
    graph["13"]["inputs"]["images"] = ["12", 0]
    graph["12"]["inputs"]["upscale_method"] = "no-such-method"  # only output 13 depends on it
    stack.submit(_pipeline("partial", graph))
    async with running_emulator(generation_latency_s=0.5) as emu:
        assert await stack.run_burst("comfyui", emu.url) == 0
        requests = dict(emu.state.stats.requests)
    [note] = stack.notifications(1)
    error = note["error"]
    assert (note["status"], error["code"], error["permanent"]) == (
        "failed",
        "runtime_rejected",
        True,
    )
    assert "outputs '13' failed validation" in error["message"]
    assert "node 12 (ImageScaleBy): Value not in list" in error["message"]
    # The accepted rest was stopped (v0.8.0 has no jobs cancel route: interrupt + queue delete).
    assert requests["POST /api/jobs/{job_id}/cancel"] == 1
    assert requests["POST /interrupt"] == 1 and requests["POST /queue"] == 1
    assert stack.objects("itest/partial/") == {}
    assert stack.status("partial").attempts == 1


async def test_top_level_errors_keep_the_node_id(stack: Stack) -> None:
    graph = workflows.txt2img("x")
    graph["8"]["class_type"] = "NoSuchDecoder"
    stack.submit(_pipeline("nonode", graph))
    async with running_emulator() as emu:
        assert await stack.run_burst("comfyui", emu.url) == 0
    [note] = stack.notifications(1)
    assert note["error"]["message"] == (
        "Cannot execute because node NoSuchDecoder does not exist. (Node ID '#8')"
    )


async def test_newer_comfyui_uuid_prompt_ids_and_jobs_routes(stack: Stack) -> None:
    """Newer ComfyUI refuses a non-UUID prompt_id and cancels with POST /api/jobs/{id}/cancel."""
    ok = workflows.txt2img("x", width=64, height=64, steps=1, filename_prefix="ok")
    partial = workflows.hires_upscale("x", width=64, height=64)
    partial["12"]["inputs"]["upscale_method"] = "no-such-method"
    stack.submit(_pipeline("newer-ok", ok))
    stack.submit(_pipeline("newer-partial", partial))
    async with running_emulator(comfyui_api="newer", generation_latency_s=0.3) as emu:
        assert await stack.run_burst("comfyui", emu.url) == 0
        requests = dict(emu.state.stats.requests)
    notes = {n["id"]: n for n in stack.notifications(2)}
    assert notes["newer-ok"]["status"] == "completed"
    assert notes["newer-partial"]["status"] == "failed"
    assert requests["POST /api/jobs/{job_id}/cancel"] == 1
    assert "POST /interrupt" not in requests and "POST /queue" not in requests
    # The result is read from the jobs route, asked about once.
    assert requests["GET /api/jobs"] == 1 and requests["GET /api/jobs/{job_id}"] >= 1
    assert "GET /history/{prompt_id}" not in requests


async def test_a_tasks_files_leave_the_comfyui_disk_once_read(stack: Stack, tmp_path: Path) -> None:
    """v0.8.0 has no delete route: the agent removes them in the shared ComfyUI directory."""
    data = tmp_path / "comfy"
    graph = workflows.load_invert_save(_png_b64(), filename_prefix="inv")
    stack.submit(_pipeline("clean", graph))
    stack.submit(_pipeline("keep-other", workflows.txt2img("x", width=64, height=64, steps=1)))
    (data / "output" / "sdq" / "someone-else").mkdir(parents=True)
    (data / "output" / "sdq" / "someone-else" / "x.png").write_bytes(b"not ours")
    async with running_emulator(data_dir=data) as emu:
        assert await stack.run_burst("comfyui", emu.url, comfyui_data_dir=str(data)) == 0
        uploads = emu.state.stats.requests["POST /upload/image"]
    notes = {n["id"]: n for n in stack.notifications(2)}
    assert {n["status"] for n in notes.values()} == {"completed"}
    assert uploads == 1
    assert image_key("itest", "clean", 1) in stack.objects("itest/clean/")
    for kind in ("input", "output"):
        assert not (data / kind / "sdq" / "clean").exists()
        assert not (data / kind / "sdq" / "keep-other").exists()
    assert (data / "output" / "sdq" / "someone-else" / "x.png").read_bytes() == b"not ours"


async def test_a_task_run_again_after_its_files_were_removed_gets_new_files(
    tmp_path: Path,
) -> None:
    """ComfyUI serves unchanged nodes from its cache; a retry must not be handed the previous
    run's (removed) files."""
    from sdq_observability.logs import configure_logging
    from sdq_queue_agent.adapters.comfyui import ComfyUiRuntime
    from sdq_queue_agent.adapters.runtime_http import runtime_session

    configure_logging("INFO")  # to this test's stdout (an earlier test's may be closed)

    graph = workflows.txt2img("x", width=64, height=64, steps=1)
    message = task("again", runtime="comfyui", tasktype="pipeline", content=graph)
    async with running_emulator(data_dir=tmp_path) as emu, runtime_session() as session:
        runtime = ComfyUiRuntime(session, emu.url, data_dir=tmp_path)
        request = runtime.prepare(message, graph)
        first = await runtime.run(request)
        # What the upload stage does: read the outputs from /view, then the clean-up hook.
        assert (await _read(first.files[0])).startswith(b"\x89PNG")
        assert first.after_upload is not None
        await first.after_upload()
        second = await runtime.run(request)
        again = await _read(second.files[0])
        assert second.after_upload is not None
        await second.after_upload()
        sampled = emu.state.stats.comfyui.generations_started
    assert len(first.files) == len(second.files) == 1
    assert again.startswith(b"\x89PNG")
    assert sampled == 2  # the save node ran again (the sampler may come from the cache)
    assert not (tmp_path / "output" / "sdq" / "again").exists()


async def _read(file: OutputFile) -> bytes:
    assert file.source is not None  # ComfyUI outputs stream from /view
    return b"".join([chunk async for chunk in file.source()])
