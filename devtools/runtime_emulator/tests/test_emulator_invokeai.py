"""InvokeAI API fidelity of the runtime emulator: the shapes and codes the real InvokeAI 6.14.2
answered (queue, images, model manager), checked route by route."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from sdq_runtime_emulator import RunningEmulator, running_emulator

pytestmark = pytest.mark.integration

Q = "/api/v1/queue/default"


def _edge(src: str, dst: str, field: str = "image") -> dict[str, Any]:
    return {
        "source": {"node_id": src, "field": field},
        "destination": {"node_id": dst, "field": field},
    }


def blank_blur(**batch: Any) -> dict[str, Any]:
    nodes = {
        "a": {"id": "a", "type": "blank_image", "width": 32, "height": 24, "is_intermediate": True},
        "b": {"id": "b", "type": "img_blur", "radius": 2},
    }
    return {"batch": {"graph": {"nodes": nodes, "edges": [_edge("a", "b")]}, **batch}}


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def _finished(http: aiohttp.ClientSession, base: str, item_id: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{base}{Q}/i/{item_id}") as resp:
                item = await resp.json()
            if item["status"] in ("completed", "failed", "canceled"):
                return dict(item)
            await asyncio.sleep(0.02)


async def test_version(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{emulator.url}/api/v1/app/version") as resp:
        assert (resp.status, await resp.json()) == (200, {"version": "6.14.2"})


async def test_enqueue_run_and_read_results_through_the_mapping(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await _post(http, f"{emulator.url}{Q}/enqueue_batch", blank_blur())
    assert status == 200 and answer["enqueued"] == answer["requested"] == 1
    assert answer["queue_id"] == "default" and answer["batch"]["batch_id"]
    [item_id] = answer["item_ids"]
    item = await _finished(http, emulator.url, item_id)
    assert item["status"] == "completed" and "error_type" not in item  # exclude_none
    session = item["session"]
    [prepared] = session["source_prepared_mapping"]["b"]
    assert prepared != "b" and session["prepared_source_mapping"][prepared] == "b"
    result = session["results"][prepared]
    assert result["type"] == "image_output" and (result["width"], result["height"]) == (32, 24)
    async with http.get(
        f"{emulator.url}/api/v1/images/i/{result['image']['image_name']}/full"
    ) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert Image.open(io.BytesIO(await resp.read())).size == (32, 24)
    async with http.get(f"{emulator.url}{Q}/b/{answer['batch']['batch_id']}/status") as resp:
        counts = await resp.json()
    assert (counts["completed"], counts["pending"], counts["total"]) == (1, 0, 1)


async def test_batch_data_makes_one_item_per_value(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    data = [[{"node_path": "b", "field_name": "radius", "items": [1, 2, 3]}]]
    status, answer = await _post(
        http, f"{emulator.url}{Q}/enqueue_batch", blank_blur(data=data, runs=2)
    )
    assert status == 200 and len(answer["item_ids"]) == 6
    item = await _finished(http, emulator.url, answer["item_ids"][1])
    assert item["field_values"] == [{"node_path": "b", "field_name": "radius", "value": 2}]
    assert item["session"]["graph"]["nodes"]["b"]["radius"] == 2


@pytest.mark.parametrize(
    ("graph", "loc", "kind", "msg"),
    [
        (
            {"nodes": {"a": {"id": "a", "type": "no_such_node"}}, "edges": []},
            ["body", "batch", "graph", "nodes", "a"],
            "union_tag_invalid",
            "Input tag 'no_such_node' found using 'type' does not match any of the expected tags",
        ),
        (
            {"nodes": {"a": {"id": "a", "type": "blank_image"}}, "edges": [_edge("a", "zz")]},
            ["body", "batch", "graph"],
            "value_error",
            "Value error, Edge destination node zz does not exist in the graph",
        ),
        (
            {
                "nodes": {
                    "a": {"id": "a", "type": "blank_image"},
                    "b": {"id": "b", "type": "img_blur"},
                },
                "edges": [
                    {
                        "source": {"node_id": "a", "field": "width"},
                        "destination": {"node_id": "b", "field": "image"},
                    }
                ],
            },
            ["body", "batch", "graph"],
            "value_error",
            "Value error, Edge source and target types do not match (a.width -> b.image)",
        ),
    ],
)
async def test_invalid_graphs_are_422_with_fastapi_detail(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    graph: Any,
    loc: list[str],
    kind: str,
    msg: str,
) -> None:
    status, answer = await _post(
        http, f"{emulator.url}{Q}/enqueue_batch", {"batch": {"graph": graph}}
    )
    [error] = answer["detail"]
    assert (status, error["loc"], error["type"]) == (422, loc, kind)
    assert error["msg"].startswith(msg)


@pytest.mark.parametrize(
    ("node", "error_type", "message"),
    [
        (
            {"type": "img_blur"},
            "MissingInputException",
            "Node img_blur missing value or connection for field image",
        ),
        (
            {
                "type": "main_model_loader",
                "model": {"key": "nope", "hash": "x", "name": "x", "base": "sd-1", "type": "main"},
            },
            "Exception",
            "Unknown model nope",
        ),
    ],
)
async def test_failures_at_run_time_mark_the_item_failed(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    node: dict[str, Any],
    error_type: str,
    message: str,
) -> None:
    body = {"batch": {"graph": {"nodes": {"n": {"id": "n", **node}}, "edges": []}}}
    status, answer = await _post(http, f"{emulator.url}{Q}/enqueue_batch", body)
    assert status == 200  # accepted at enqueue, like the real server
    item = await _finished(http, emulator.url, answer["item_ids"][0])
    assert (item["status"], item["error_type"], item["error_message"]) == (
        "failed",
        error_type,
        message,
    )


async def test_upload_full_and_delete_images(
    emulator: RunningEmulator, http: aiohttp.ClientSession, helpers: Any
) -> None:
    base = f"{emulator.url}/api/v1/images"
    form = aiohttp.FormData()
    raw = __import__("base64").b64decode(helpers.png_b64(20, 10, (255, 0, 0)))
    form.add_field("file", raw, filename="in.png", content_type="image/png")
    async with http.post(
        f"{base}/upload", params={"image_category": "user", "is_intermediate": "true"}, data=form
    ) as resp:
        assert resp.status == 201
        dto = await resp.json()
    assert (dto["width"], dto["height"], dto["is_intermediate"], dto["image_category"]) == (
        20,
        10,
        True,
        "user",
    )
    name = dto["image_name"]
    bad = aiohttp.FormData()
    bad.add_field("file", b"not an image", filename="x.png", content_type="image/png")
    async with http.post(
        f"{base}/upload", params={"image_category": "user", "is_intermediate": "true"}, data=bad
    ) as resp:
        assert (resp.status, await resp.json()) == (415, {"detail": "Failed to read image"})
    async with http.delete(f"{base}/i/{name}") as resp:
        assert resp.status == 200 and (await resp.json())["deleted_images"] == [name]
    async with http.delete(f"{base}/i/{name}") as resp:
        assert (resp.status, await resp.json()) == (404, {"detail": "Image not found"})
    async with http.get(f"{base}/i/{name}/full") as resp:
        assert resp.status == 404


async def test_model_install_by_path_and_its_job(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    checkpoint = tmp_path / "Stable-diffusion" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"x")
    async with running_emulator(models_dir=str(tmp_path)) as emu:
        models = f"{emu.url}/api/v2/models"
        async with http.get(f"{models}/scan_folder", params={"scan_path": str(tmp_path)}) as resp:
            assert await resp.json() == [{"path": str(checkpoint), "is_installed": False}]
        async with http.get(
            f"{models}/scan_folder", params={"scan_path": str(tmp_path / "no")}
        ) as resp:
            assert resp.status == 400
        install = {"source": str(checkpoint), "inplace": "true"}
        async with http.post(f"{models}/install", params=install, json={}) as resp:
            job = await resp.json()
            assert resp.status == 201 and job["id"] == 0  # job ids start at 0
        async with http.get(f"{models}/install/0") as resp:
            job = await resp.json()
        record = job["config_out"]
        assert job["status"] == "completed"
        assert (record["name"], record["type"], record["base"]) == ("tiny", "main", "sd-1")
        async with http.get(f"{models}/", params={"model_name": "tiny"}) as resp:
            assert (await resp.json())["models"] == [record]
        async with http.get(f"{models}/") as resp:
            listed = {m["name"] for m in (await resp.json())["models"]}
        assert listed == {"tiny", "v1-5-pruned-emaonly", "sd_xl_base_1.0"}  # + the built-ins
        async with http.post(f"{models}/install", params=install, json={}) as resp:
            again = await resp.json()
        assert (again["status"], again["error_reason"]) == ("error", "DuplicateModelException")
        async with http.post(
            f"{models}/install", params={"source": str(tmp_path / "gone.ckpt")}, json={}
        ) as resp:
            assert resp.status == 409
            assert (await resp.json())["detail"].startswith("Unsupported model source")


async def test_cancel_pending_and_running_items(http: aiohttp.ClientSession) -> None:
    async with running_emulator(hang_next=1, models_dir=None) as emu:
        # A generation graph (denoise) consumes the hang fault and runs until canceled.
        nodes = {
            "p": {"id": "p", "type": "compel", "prompt": "x", "clip": {"model": {}}},
            "n": {"id": "n", "type": "noise", "seed": 1, "width": 8, "height": 8},
            "d": {"id": "d", "type": "denoise_latents", "unet": {"model": {}}},
        }
        edges = [
            _edge("p", "d", "conditioning")
            | {"destination": {"node_id": "d", "field": "positive_conditioning"}},
            _edge("p", "d", "conditioning")
            | {"destination": {"node_id": "d", "field": "negative_conditioning"}},
            _edge("n", "d", "noise"),
        ]
        status, answer = await _post(
            http,
            f"{emu.url}{Q}/enqueue_batch",
            {"batch": {"graph": {"nodes": nodes, "edges": edges}, "runs": 2}},
        )
        assert status == 200
        running, waiting = answer["item_ids"]
        async with asyncio.timeout(10):
            while emu.state.stats.invokeai.active_generations == 0:
                await asyncio.sleep(0.02)
        for item_id in (waiting, running):
            async with http.put(f"{emu.url}{Q}/i/{item_id}/cancel") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "canceled"
        assert (await _finished(http, emu.url, running))["status"] == "canceled"
        async with asyncio.timeout(10):
            while emu.state.stats.invokeai.active_generations:
                await asyncio.sleep(0.02)
        stats = emu.state.stats.invokeai
        assert (stats.interrupts, stats.generations_interrupted, stats.generations_started) == (
            2,
            1,
            1,
        )
        async with http.put(f"{emu.url}{Q}/i/999/cancel") as resp:
            assert resp.status == 404
        async with http.delete(f"{emu.url}{Q}/i/{running}") as resp:
            assert resp.status == 200
        async with http.get(f"{emu.url}{Q}/i/{running}") as resp:
            assert (resp.status, await resp.json()) == (
                404,
                {"detail": f"Queue item with id {running} not found in queue default"},
            )


async def test_injected_http_failure_answers_fastapi_shape(http: aiohttp.ClientSession) -> None:
    async with running_emulator(fail_next=1, fail_status=503) as emu:
        status, answer = await _post(http, f"{emu.url}{Q}/enqueue_batch", blank_blur())
        assert status == 503 and "injected failure" in answer["detail"]
        status, _ = await _post(http, f"{emu.url}{Q}/enqueue_batch", blank_blur())
        assert status == 200
