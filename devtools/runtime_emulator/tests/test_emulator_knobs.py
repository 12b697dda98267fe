"""Knobs of the runtime emulator: control endpoint, slow start, failures, hangs, exits."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sdq_runtime_emulator import KnobError, Knobs, running_emulator, workflows

pytestmark = pytest.mark.integration

TXT2IMG = "/sdapi/v1/txt2img"
SMALL = {"prompt": "x", "width": 64, "height": 64}


async def set_knobs(http: aiohttp.ClientSession, url: str, **knobs: object) -> dict:
    async with http.post(f"{url}/emulator/knobs", json=knobs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_knobs_endpoint_round_trip_and_rejects_bad_values(emulator, http):
    changed = await set_knobs(http, emulator.url, generation_latency_s=0.5, fail_next=2)
    assert changed["generation_latency_s"] == 0.5 and changed["fail_next"] == 2
    async with http.get(f"{emulator.url}/emulator/knobs") as response:
        assert (await response.json())["fail_next"] == 2
    for bad in ({"nope": 1}, {"fail_next": "many"}, {"fail_status": 200}, {"fail_kind": "x"}):
        async with http.post(f"{emulator.url}/emulator/knobs", json=bad) as response:
            assert response.status == 400
            assert next(iter(bad)) in (await response.json())["error"]


def test_knobs_constructor_validates_fields():
    with pytest.raises(KnobError, match="default_width"):
        Knobs(default_width=2)
    assert Knobs().updated({"hang_next": 1}).hang_next == 1


async def test_slow_start_answers_503_except_on_knobs_then_becomes_ready(http):
    async with running_emulator(slow_start_s=0.4) as emulator:
        for path in ("/sdapi/v1/options", "/system_stats", "/sdapi/v1/memory"):
            async with http.get(f"{emulator.url}{path}") as response:
                assert response.status == 503
        async with http.get(f"{emulator.url}/emulator/knobs") as response:
            assert response.status == 200
        ready_status = 0
        for _ in range(100):
            async with http.get(f"{emulator.url}/system_stats") as response:
                ready_status = response.status
            if ready_status == 200:
                break
            await asyncio.sleep(0.05)
        assert ready_status == 200


async def test_slow_start_drop_mode_closes_the_connection(http):
    async with running_emulator(slow_start_s=30, slow_start_mode="drop") as emulator:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{emulator.url}/sdapi/v1/memory")
        await set_knobs(http, emulator.url, slow_start_s=0.0)
        async with http.get(f"{emulator.url}/sdapi/v1/memory") as response:
            assert response.status == 200


async def test_fail_next_n_generation_requests_with_500(emulator, http):
    await set_knobs(http, emulator.url, fail_next=2, fail_status=500)
    async with http.get(f"{emulator.url}/sdapi/v1/options") as response:
        assert response.status == 200  # scope "generation": health routes unaffected
    statuses = []
    for _ in range(3):
        async with http.post(f"{emulator.url}{TXT2IMG}", json=SMALL) as response:
            statuses.append(response.status)
            body = await response.json()
    assert statuses == [500, 500, 200]
    assert "images" in body
    async with http.get(f"{emulator.url}/emulator/stats") as response:
        assert (await response.json())["injected_failures"] == 2


async def test_fail_with_4xx_on_every_route_uses_each_api_error_shape(emulator, http):
    await set_knobs(http, emulator.url, fail_next=2, fail_status=429, fail_scope="all")
    async with http.get(f"{emulator.url}/sdapi/v1/memory") as response:
        assert response.status == 429
        assert set(await response.json()) == {"error", "detail", "body", "errors"}
    async with http.post(f"{emulator.url}/prompt", json={"prompt": {}}) as response:
        assert response.status == 429
        body = await response.json()
    assert body["error"]["type"] == "emulator_injected_failure"
    assert body["node_errors"] == {}


async def test_comfyui_http_500_injection_on_prompt(emulator, http):
    await set_knobs(http, emulator.url, fail_next=1)
    graph = {"prompt": workflows.txt2img("x", width=64, height=64)}
    async with http.post(f"{emulator.url}/prompt", json=graph) as response:
        assert response.status == 500
    async with http.post(f"{emulator.url}/prompt", json=graph) as response:
        assert response.status == 200


async def test_sdwebui_execution_error_is_500_out_of_memory(emulator, http):
    await set_knobs(http, emulator.url, fail_next=1, fail_kind="execution_error")
    async with http.post(f"{emulator.url}{TXT2IMG}", json=SMALL) as response:
        assert response.status == 500
        body = await response.json()
    assert body["error"] == "OutOfMemoryError" and "out of memory" in body["errors"]
    assert emulator.state.stats.sdwebui.generations_failed == 1


async def test_hang_never_answers_until_the_client_gives_up(emulator, http):
    await set_knobs(http, emulator.url, hang_next=1)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            f"{emulator.url}{TXT2IMG}", json=SMALL, timeout=aiohttp.ClientTimeout(total=0.5)
        )
    assert time.monotonic() - started >= 0.5
    async with http.post(f"{emulator.url}{TXT2IMG}", json=SMALL) as response:
        assert response.status == 200  # the hung job let go of the lock
    async with http.get(f"{emulator.url}/emulator/knobs") as response:
        assert (await response.json())["hang_next"] == 0


async def test_hang_ends_with_interrupt(emulator, http):
    await set_knobs(http, emulator.url, hang_next=1)
    generation = asyncio.create_task(http.post(f"{emulator.url}{TXT2IMG}", json=SMALL))
    for _ in range(100):
        if emulator.state.stats.sdwebui.active_generations:
            break
        await asyncio.sleep(0.02)
    async with http.post(f"{emulator.url}/sdapi/v1/interrupt") as response:
        assert response.status == 200
    async with await generation as response:
        assert response.status == 200
        assert len((await response.json())["images"]) == 1


async def test_exit_in_process_drops_the_sdwebui_connection(emulator, http):
    await set_knobs(http, emulator.url, exit_next=1, generation_latency_s=0.2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.post(f"{emulator.url}{TXT2IMG}", json=SMALL)
    async with http.post(f"{emulator.url}{TXT2IMG}", json=SMALL) as response:
        assert response.status == 200


async def test_exit_in_process_drops_comfyui_sockets_and_history(emulator, http):
    await set_knobs(http, emulator.url, exit_next=1, generation_latency_s=0.2)
    async with http.ws_connect(f"{emulator.url}/ws?clientId=d") as ws:
        graph = {"prompt": workflows.txt2img("x", width=64, height=64), "client_id": "d"}
        async with http.post(f"{emulator.url}/prompt", json=graph) as response:
            prompt_id = (await response.json())["prompt_id"]
        types = []
        async with asyncio.timeout(10):
            async for message in ws:
                types.append(message.json()["type"])
    assert ws.closed
    assert "execution_success" not in types
    async with http.get(f"{emulator.url}/history/{prompt_id}") as response:
        assert await response.json() == {}


async def test_model_switch_latency_applies_to_comfyui_checkpoint_loads(http):
    async with running_emulator(model_switch_latency_s=0.3) as emulator:
        started = time.monotonic()
        graph = {"prompt": workflows.txt2img("x", width=64, height=64), "client_id": "m"}
        async with http.post(f"{emulator.url}/prompt", json=graph) as response:
            prompt_id = (await response.json())["prompt_id"]
        for _ in range(200):
            async with http.get(f"{emulator.url}/history/{prompt_id}") as response:
                if await response.json():
                    break
            await asyncio.sleep(0.02)
        assert time.monotonic() - started >= 0.3
        assert emulator.state.stats.comfyui.model_switches == 1
