"""ComfyUI API fidelity of the runtime emulator (graph validation, WS events, history, files)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from sdq_runtime_emulator import running_emulator, workflows

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 10.0


async def collect(ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> list[dict[str, Any]]:
    """Frames until ``executing`` with ``node: null`` for ``prompt_id`` (bounded in time)."""
    frames = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for message in ws:
            frame = message.json()
            frames.append(frame)
            data = frame["data"]
            if (
                frame["type"] == "executing"
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                return frames
    raise AssertionError(f"socket closed before prompt {prompt_id} finished: {frames}")


async def wait_executing(ws: aiohttp.ClientWebSocketResponse, node: str) -> list[dict]:
    """Frames until the ``executing`` event of ``node`` (bounded in time)."""
    frames = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for message in ws:
            frames.append(message.json())
            if frames[-1]["type"] == "executing" and frames[-1]["data"]["node"] == node:
                return frames
    raise AssertionError(f"socket closed before node {node} ran: {frames}")


async def post_prompt(http, url: str, prompt: dict, **extra: Any) -> tuple[int, dict]:
    async with http.post(f"{url}/prompt", json={"prompt": prompt, **extra}) as response:
        return response.status, await response.json()


async def history_of(http, url: str, prompt_id: str) -> dict:
    async with http.get(f"{url}/history/{prompt_id}") as response:
        return await response.json()


async def wait_history(http, url: str, prompt_id: str) -> dict:
    for _ in range(200):
        entry = await history_of(http, url, prompt_id)
        if entry:
            return entry[prompt_id]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no history for {prompt_id}")


async def view(http, url: str, image: dict) -> Image.Image:
    async with http.get(f"{url}/view", params=image) as response:
        assert response.status == 200
        data = await response.read()
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data))


async def test_txt2img_events_reach_only_the_posting_client(emulator, http):
    url = emulator.url
    async with (
        http.ws_connect(f"{url}/ws?clientId=alice") as alice,
        http.ws_connect(f"{url}/ws?clientId=bob") as bob,
    ):
        workflow = workflows.txt2img(
            "a lighthouse", seed=5, width=320, height=192, steps=4, filename_prefix="task-1/out"
        )
        status, body = await post_prompt(
            http, url, workflow, client_id="alice", prompt_id="my-id-1"
        )
        assert status == 200
        assert body == {"prompt_id": "my-id-1", "number": 0, "node_errors": {}}
        frames = await collect(alice, "my-id-1")
        await bob.send_str("ping")  # bob's socket stays usable; drain what it got
        bob_frames = []
        while True:
            try:
                message = await bob.receive(timeout=0.2)
            except TimeoutError:
                break
            bob_frames.append(message.json())

    types = [frame["type"] for frame in frames]
    assert types[0] == "status" and frames[0]["data"]["sid"] == "alice"
    per_prompt = [frame for frame in frames if frame["type"] != "status"]
    assert [frame["type"] for frame in per_prompt[:2]] == ["execution_start", "execution_cached"]
    executing = [f["data"]["node"] for f in per_prompt if f["type"] == "executing"]
    assert executing[-1] is None
    assert sorted(executing[:-1]) == ["3", "4", "5", "6", "7", "8", "9"]
    position = {node: index for index, node in enumerate(executing[:-1])}
    for before, after in (("4", "6"), ("4", "7"), ("5", "3"), ("6", "3"), ("3", "8"), ("8", "9")):
        assert position[before] < position[after]
    progress = [f["data"] for f in per_prompt if f["type"] == "progress"]
    assert [p["value"] for p in progress] == [1, 2, 3, 4] and progress[0]["max"] == 4
    executed = next(f["data"] for f in per_prompt if f["type"] == "executed")
    assert executed["node"] == "9"
    image = executed["output"]["images"][0]
    assert image["subfolder"] == "task-1" and image["type"] == "output"
    assert image["filename"].startswith("out_") and image["filename"].endswith(".png")
    assert types[-2:] == ["execution_success", "executing"]
    assert all(frame["type"] == "status" for frame in bob_frames)
    assert all("prompt_id" not in frame["data"] for frame in bob_frames)

    entry = await wait_history(http, url, "my-id-1")
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    assert entry["outputs"]["9"]["images"] == [image]
    assert (await view(http, url, image)).size == (320, 192)


async def test_history_is_empty_until_done_and_for_unknown_ids(http):
    async with running_emulator(generation_latency_s=0.3) as emulator:
        workflow = workflows.txt2img("slow", steps=2)
        _, body = await post_prompt(http, emulator.url, workflow, client_id="c")
        assert await history_of(http, emulator.url, body["prompt_id"]) == {}
        assert await history_of(http, emulator.url, "unknown") == {}
        entry = await wait_history(http, emulator.url, body["prompt_id"])
        async with http.get(f"{emulator.url}/history") as response:
            everything = await response.json()
    assert entry["outputs"]["9"]["images"]
    assert list(everything) == [body["prompt_id"]]


async def test_generated_images_differ_between_prompts(emulator, http):
    images = []
    for seed in (1, 2):
        _, body = await post_prompt(
            http,
            emulator.url,
            workflows.txt2img("x", seed=seed, width=64, height=64),
            client_id="c",
        )
        entry = await wait_history(http, emulator.url, body["prompt_id"])
        images.append(await view(http, emulator.url, entry["outputs"]["9"]["images"][0]))
    assert images[0].tobytes() != images[1].tobytes()


async def test_upload_then_load_image_runs_weight_free_graph(emulator, http):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 30)).save(buffer, format="PNG")
    form = aiohttp.FormData()
    form.add_field("image", buffer.getvalue(), filename="in.png", content_type="image/png")
    form.add_field("subfolder", "task-7")
    form.add_field("overwrite", "true")
    async with http.post(f"{emulator.url}/upload/image", data=form) as response:
        uploaded = await response.json()
    assert uploaded == {"name": "in.png", "subfolder": "task-7", "type": "input"}

    workflow = workflows.load_invert_save("task-7/in.png", filename_prefix="task-7/inverted")
    _, body = await post_prompt(http, emulator.url, workflow, client_id="c")
    entry = await wait_history(http, emulator.url, body["prompt_id"])
    result = await view(http, emulator.url, entry["outputs"]["3"]["images"][0])
    assert result.size == (24, 16)
    assert result.convert("RGB").getpixel((0, 0)) == (245, 55, 225)
    source = await view(
        http, emulator.url, {"filename": "in.png", "subfolder": "task-7", "type": "input"}
    )
    assert source.convert("RGB").getpixel((0, 0)) == (10, 200, 30)


async def test_upload_without_overwrite_renames_a_different_file(emulator, http):
    names = []
    for colour in ((1, 1, 1), (2, 2, 2)):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
        form = aiohttp.FormData()
        form.add_field("image", buffer.getvalue(), filename="same.png")
        async with http.post(f"{emulator.url}/upload/image", data=form) as response:
            names.append((await response.json())["name"])
    assert names == ["same.png", "same (1).png"]


async def test_load_image_of_a_missing_file_is_a_validation_error(emulator, http):
    status, body = await post_prompt(http, emulator.url, workflows.load_invert_save("nope.png"))
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    reason = body["node_errors"]["1"]["errors"][0]
    assert reason["type"] == "custom_validation_failed"
    assert reason["details"] == "image - Invalid image file: nope.png"
    assert body["node_errors"]["1"]["dependent_outputs"] == ["3"]
    assert body["node_errors"]["1"]["class_type"] == "LoadImage"


def _bad_graphs() -> list[tuple[str, dict, str]]:
    missing_input = workflows.txt2img("x")
    del missing_input["3"]["inputs"]["seed"]
    bad_link = workflows.txt2img("x")
    bad_link["8"]["inputs"]["samples"] = ["42", 0]
    out_of_range = workflows.txt2img("x")
    out_of_range["5"]["inputs"]["width"] = 4
    wrong_type = workflows.txt2img("x")
    wrong_type["8"]["inputs"]["samples"] = ["4", 0]
    return [
        ("no class", {"1": {"inputs": {}}}, "invalid_prompt"),
        ("unknown class", {"1": {"class_type": "Teleport", "inputs": {}}}, "invalid_prompt"),
        (
            "no output",
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
                }
            },
            "prompt_no_outputs",
        ),
        ("missing input", missing_input, "prompt_outputs_failed_validation"),
        ("missing node", bad_link, "prompt_outputs_failed_validation"),
        ("below min", out_of_range, "prompt_outputs_failed_validation"),
        ("type mismatch", wrong_type, "prompt_outputs_failed_validation"),
    ]


@pytest.mark.parametrize(("case", "graph", "kind"), _bad_graphs(), ids=lambda v: str(v)[:14])
async def test_invalid_graphs_are_400_with_error_shape(emulator, http, case, graph, kind):
    status, body = await post_prompt(http, emulator.url, graph, client_id="c")
    assert status == 400, case
    assert set(body) == {"error", "node_errors"}
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    assert body["error"]["type"] == kind
    for node_error in body["node_errors"].values():
        assert set(node_error) == {"errors", "dependent_outputs", "class_type"}
        assert set(node_error["errors"][0]) == {"type", "message", "details", "extra_info"}


async def test_missing_required_input_names_the_node_and_input(emulator, http):
    graph = workflows.txt2img("x")
    del graph["3"]["inputs"]["seed"]
    _, body = await post_prompt(http, emulator.url, graph)
    reason = body["node_errors"]["3"]["errors"][0]
    assert reason["type"] == "required_input_missing"
    assert reason["extra_info"] == {"input_name": "seed"}
    assert body["node_errors"]["3"]["dependent_outputs"] == ["9"]


async def test_no_prompt_is_400(emulator, http):
    async with http.post(f"{emulator.url}/prompt", json={"client_id": "c"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "no_prompt"


async def test_valid_output_runs_while_invalid_one_is_reported(emulator, http):
    graph = workflows.txt2img("x", width=64, height=64)
    graph["10"] = {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}}
    status, body = await post_prompt(http, emulator.url, graph, client_id="c")
    assert status == 200
    assert set(body["node_errors"]) == {"10"}
    entry = await wait_history(http, emulator.url, body["prompt_id"])
    assert set(entry["outputs"]) == {"9"}


async def test_identical_graph_without_client_id_has_empty_history_outputs(emulator, http):
    graph = workflows.txt2img("cached", width=64, height=64)
    first = [await post_prompt(http, emulator.url, graph) for _ in range(2)]
    entries = [await wait_history(http, emulator.url, body["prompt_id"]) for _, body in first]
    assert entries[0]["outputs"]["9"]["images"]
    assert entries[1]["outputs"] == {}
    assert entries[1]["status"]["status_str"] == "success"
    cached = next(
        data for kind, data in entries[1]["status"]["messages"] if kind == "execution_cached"
    )
    assert sorted(cached["nodes"]) == ["3", "4", "5", "6", "7", "8", "9"]

    _, again = await post_prompt(http, emulator.url, graph, client_id="c")
    with_client = await wait_history(http, emulator.url, again["prompt_id"])
    assert with_client["outputs"]["9"] == entries[0]["outputs"]["9"]
    assert emulator.state.stats.comfyui.generations_started == 1


async def test_queue_delete_pending_and_targeted_interrupt(http):
    async with running_emulator(hang_next=1) as emulator:
        url = emulator.url
        async with http.ws_connect(f"{url}/ws?clientId=q") as ws:
            _, first = await post_prompt(http, url, workflows.txt2img("a"), client_id="q")
            _, second = await post_prompt(http, url, workflows.txt2img("b"), client_id="q")
            await wait_executing(ws, "3")  # the sampler, which hangs
            async with http.get(f"{url}/queue") as response:
                queue = await response.json()
            assert [item[1] for item in queue["queue_running"]] == [first["prompt_id"]]
            assert [item[1] for item in queue["queue_pending"]] == [second["prompt_id"]]
            async with http.post(f"{url}/queue", json={"delete": [second["prompt_id"]]}) as r:
                assert r.status == 200
            async with http.post(f"{url}/interrupt", json={"prompt_id": "someone-else"}) as r:
                assert r.status == 200
            async with http.post(f"{url}/interrupt", json={"prompt_id": first["prompt_id"]}) as r:
                assert r.status == 200
            frames = await collect(ws, first["prompt_id"])
        entry = await wait_history(http, url, first["prompt_id"])
        async with http.get(f"{url}/queue") as response:
            assert await response.json() == {"queue_running": [], "queue_pending": []}
        assert await history_of(http, url, second["prompt_id"]) == {}
    interrupted = next(f["data"] for f in frames if f["type"] == "execution_interrupted")
    assert interrupted["node_id"] == "3" and interrupted["node_type"] == "KSampler"
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["outputs"] == {}


async def test_execution_error_event_and_history(http):
    async with running_emulator(fail_next=1, fail_kind="execution_error") as emulator:
        async with http.ws_connect(f"{emulator.url}/ws?clientId=e") as ws:
            _, body = await post_prompt(http, emulator.url, workflows.txt2img("x"), client_id="e")
            frames = await collect(ws, body["prompt_id"])
        entry = await wait_history(http, emulator.url, body["prompt_id"])
    error = next(frame["data"] for frame in frames if frame["type"] == "execution_error")
    assert {"node_id", "node_type", "exception_type", "exception_message", "traceback"} <= set(
        error
    )
    assert error["node_type"] == "KSampler" and error["exception_type"] == "RuntimeError"
    assert "execution_success" not in [frame["type"] for frame in frames]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_error"


async def test_prompts_execute_one_at_a_time_in_order(http):
    async with running_emulator(generation_latency_s=0.1) as emulator:
        ids = []
        for seed in range(3):
            _, body = await post_prompt(
                http, emulator.url, workflows.txt2img("x", seed=seed, width=64, height=64)
            )
            ids.append(body["prompt_id"])
        entries = [await wait_history(http, emulator.url, prompt_id) for prompt_id in ids]
        stats = emulator.state.stats.comfyui
    starts = [
        next(
            data["timestamp"]
            for kind, data in entry["status"]["messages"]
            if kind == "execution_start"
        )
        for entry in entries
    ]
    assert starts == sorted(starts)
    assert stats.peak_active_generations == 1
    assert stats.generations_completed == 3


async def test_object_info_lists_the_nodes_and_checkpoints(emulator, http):
    async with http.get(f"{emulator.url}/object_info") as response:
        info = await response.json()
    expected = {
        "EmptyImage",
        "LoadImage",
        "ImageInvert",
        "ImageScale",
        "ImageBlur",
        "SaveImage",
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "KSampler",
        "EmptyLatentImage",
        "VAEDecode",
    }
    assert expected <= set(info)
    ckpts = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert "v1-5-pruned-emaonly.safetensors" in ckpts
    assert info["SaveImage"]["output_node"] is True


async def test_system_stats_and_empty_image_scale_blur(emulator, http):
    async with http.get(f"{emulator.url}/system_stats") as response:
        assert "devices" in await response.json()
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 40, "height": 20, "batch_size": 2, "color": 0xFF0000},
        },
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": 80,
                "height": 40,
                "crop": "disabled",
            },
        },
        "3": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["2", 0], "blur_radius": 2, "sigma": 1.0},
        },
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "plain"},
        },
    }
    _, body = await post_prompt(http, emulator.url, graph, client_id="c")
    entry = await wait_history(http, emulator.url, body["prompt_id"])
    images = entry["outputs"]["4"]["images"]
    assert [image["filename"] for image in images] == ["plain_00001_.png", "plain_00002_.png"]
    picture = await view(http, emulator.url, images[0])
    assert picture.size == (80, 40)
    assert picture.convert("RGB").getpixel((40, 20)) == (255, 0, 0)


async def test_view_rejects_traversal_and_unknown_files(emulator, http):
    async with http.get(f"{emulator.url}/view", params={"filename": "../x.png"}) as response:
        assert response.status == 400
    async with http.get(f"{emulator.url}/view", params={"filename": "none.png"}) as response:
        assert response.status == 404


# --- behaviours of the real v0.8.0 (see /work/shared/runtimes/README.md) ----------------


async def _upload(http, url: str, data: bytes, name: str, subfolder: str = "") -> str:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    form.add_field("subfolder", subfolder)
    async with http.post(f"{url}/upload/image", data=form) as response:
        body = await response.json()
    return f"{body['subfolder']}/{body['name']}" if body["subfolder"] else body["name"]


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


async def test_img2img_graph_encodes_the_input_cropped_to_multiples_of_8(emulator, http):
    name = await _upload(http, emulator.url, _png(100, 70), "in.png")
    graph = workflows.img2img("a cat", name, steps=2, filename_prefix="i2i")
    status, answer = await post_prompt(http, emulator.url, graph, client_id="c")
    assert status == 200 and answer["node_errors"] == {}
    entry = await wait_history(http, emulator.url, answer["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    [image] = entry["outputs"]["9"]["images"]
    assert (await view(http, emulator.url, image)).size == (96, 64)


async def test_upscale_graph_saves_both_sizes(emulator, http):
    graph = workflows.hires_upscale("a dog", width=128, height=64, scale_by=2.0)
    status, answer = await post_prompt(http, emulator.url, graph, client_id="c")
    assert status == 200
    entry = await wait_history(http, emulator.url, answer["prompt_id"])
    sizes = [
        (await view(http, emulator.url, entry["outputs"][node]["images"][0])).size
        for node in ("9", "13")
    ]
    assert sizes == [(128, 64), (256, 128)]


async def test_unknown_node_class_is_refused_with_the_node_id(emulator, http):
    graph = workflows.txt2img("x")
    graph["8"]["class_type"] = "ControlNetApplyAdvanced"
    status, answer = await post_prompt(http, emulator.url, graph)
    assert status == 400
    assert answer == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node ControlNetApplyAdvanced does not exist.",
            "details": "Node ID '#8'",
            "extra_info": {},
        },
        "node_errors": {},
    }


async def test_upscale_model_without_models_fails_validation(emulator, http):
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "u"}},
    }
    status, answer = await post_prompt(http, emulator.url, graph)
    assert status == 400
    [error] = answer["node_errors"]["2"]["errors"]
    assert error["type"] == "value_not_in_list"


async def test_upscale_model_from_the_models_dir(tmp_path, http):
    (tmp_path / "upscale_models").mkdir()
    (tmp_path / "upscale_models" / "2x-Tiny.pth").write_bytes(b"weights")
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "2x-Tiny.pth"}},
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "u"}},
    }
    async with running_emulator(models_dir=str(tmp_path)) as emulator:
        async with http.get(f"{emulator.url}/models/upscale_models") as response:
            assert await response.json() == ["2x-Tiny.pth"]
        status, answer = await post_prompt(http, emulator.url, graph, client_id="c")
        assert status == 200, answer
        entry = await wait_history(http, emulator.url, answer["prompt_id"])
        image = entry["outputs"]["4"]["images"][0]
        assert (await view(http, emulator.url, image)).size == (16, 8)


async def test_plain_base64_in_load_image_is_taken_as_a_file_name(emulator, http):
    import base64

    encoded = base64.b64encode(_png(8, 8)).decode()
    status, answer = await post_prompt(http, emulator.url, workflows.load_invert_save(encoded))
    assert status == 400
    [error] = answer["node_errors"]["1"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert error["details"].startswith("image - Invalid image file: iVBOR")


async def test_features_and_model_folders(emulator, http):
    async with http.get(f"{emulator.url}/features") as response:
        features = await response.json()
    assert features["max_upload_size"] == 100 * 1024 * 1024
    async with http.get(f"{emulator.url}/models") as response:
        folders = await response.json()
    assert folders[0] == "checkpoints" and "upscale_models" in folders
    async with http.get(f"{emulator.url}/models/checkpoints") as response:
        assert "v1-5-pruned-emaonly.safetensors" in await response.json()
    async with http.get(f"{emulator.url}/models/nope") as response:
        assert response.status == 404


async def test_jobs_routes_of_v0_8_0(emulator, http):
    status, answer = await post_prompt(
        http, emulator.url, workflows.txt2img("x", width=64, height=64, steps=1), client_id="c"
    )
    prompt_id = answer["prompt_id"]
    await wait_history(http, emulator.url, prompt_id)
    async with http.get(f"{emulator.url}/api/jobs/{prompt_id}") as response:
        job = await response.json()
    assert job["id"] == prompt_id and job["status"] == "completed"
    assert job["outputs"]["9"]["images"] and job["execution_status"]["status_str"] == "success"
    async with http.get(f"{emulator.url}/api/jobs", params={"limit": "1"}) as response:
        listed = await response.json()
    assert [j["id"] for j in listed["jobs"]] == [prompt_id]
    assert "outputs" not in listed["jobs"][0]
    async with http.get(f"{emulator.url}/api/jobs/{'0' * 8}") as response:
        assert (response.status, await response.json()) == (404, {"error": "Job not found"})
    # v0.8.0 has no cancel route: aiohttp's plain 404.
    async with http.post(f"{emulator.url}/api/jobs/{prompt_id}/cancel") as response:
        assert response.status == 404
        assert response.content_type == "text/plain"
    # ... and takes any client-chosen prompt_id.
    status, _ = await post_prompt(
        http, emulator.url, workflows.txt2img("y", width=64, height=64, steps=1), prompt_id="mine"
    )
    assert status == 200


async def test_newer_api_cancels_jobs_and_wants_uuid_prompt_ids(http):
    async with running_emulator(comfyui_api="newer", hang_next=1) as emulator:
        graph = workflows.txt2img("x", width=64, height=64, steps=1)
        status, answer = await post_prompt(http, emulator.url, graph, prompt_id="mine")
        assert status == 400 and answer["error"]["type"] == "invalid_prompt_id"
        prompt_id = "5b0f3f4e-3a4c-4d7e-9a55-0c1f2d3e4f50"
        async with http.ws_connect(f"{emulator.url}/ws?clientId=c") as ws:
            status, _ = await post_prompt(
                http, emulator.url, graph, prompt_id=prompt_id, client_id="c"
            )
            assert status == 200
            await wait_executing(ws, "3")
            async with http.post(f"{emulator.url}/api/jobs/{prompt_id}/cancel") as response:
                assert response.status == 200
            frames = await collect(ws, prompt_id)
        assert "execution_interrupted" in [f["type"] for f in frames]
        async with http.post(f"{emulator.url}/api/jobs/{prompt_id}/cancel") as response:
            assert response.status == 404 and (await response.json()) == {"error": "Job not found"}
