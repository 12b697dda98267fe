"""SD WebUI API fidelity of the runtime emulator (shapes, status codes, quirks)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration

SD = "/sdapi/v1"


async def test_txt2img_returns_batch_times_iter_pngs_with_info(emulator, http, helpers):
    body = {
        "prompt": "a red fox",
        "seed": 1234,
        "width": 320,
        "height": 192,
        "batch_size": 2,
        "n_iter": 2,
    }
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        assert response.status == 200
        result = await response.json()

    assert len(result["images"]) == 4
    for encoded in result["images"]:
        assert not encoded.startswith("data:")
        assert helpers.png_image(encoded).size == (320, 192)
    assert result["parameters"]["prompt"] == "a red fox"
    assert result["parameters"]["batch_size"] == 2
    info = json.loads(result["info"])
    assert info["seed"] == 1234
    assert info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert info["sd_model_name"] == "v1-5-pruned-emaonly"
    assert len(info["infotexts"]) == 4
    assert "Seed: 1234" in info["infotexts"][0]


async def test_two_requests_give_different_pixels(emulator, http, helpers):
    images = []
    for _ in range(2):
        body = {"prompt": "same prompt", "seed": 7, "width": 64, "height": 64}
        async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
            images.append(helpers.png_image((await response.json())["images"][0]))
    assert images[0].tobytes() != images[1].tobytes()


async def test_random_seed_when_minus_one(emulator, http):
    async with http.post(f"{emulator.url}{SD}/txt2img", json={"width": 64, "height": 64}) as r:
        info = json.loads((await r.json())["info"])
    assert info["seed"] >= 0
    assert info["all_seeds"] == [info["seed"]]


async def test_default_size_comes_from_the_knob(http, helpers):
    async with running_emulator(default_width=96, default_height=80) as emulator:
        response = await http.post(f"{emulator.url}{SD}/txt2img", json={"prompt": "x"})
        image = helpers.png_image((await response.json())["images"][0])
    assert image.size == (96, 80)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"width": "wide"}, ["body", "width"]),
        ({"batch_size": [1]}, ["body", "batch_size"]),
        ({"override_settings": "x"}, ["body", "override_settings"]),
    ],
)
async def test_validation_errors_are_422_with_detail(emulator, http, body, loc):
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        assert response.status == 422
        detail = (await response.json())["detail"]
    assert detail[0]["loc"] == loc
    assert detail[0]["type"].startswith("type_error")


async def test_non_json_body_is_422(emulator, http):
    async with http.post(f"{emulator.url}{SD}/txt2img", data=b"{nope") as response:
        assert response.status == 422
        assert (await response.json())["detail"][0]["type"] == "value_error.jsondecode"


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
async def test_img2img_accepts_init_image_with_or_without_data_prefix(
    emulator, http, helpers, prefix
):
    init = prefix + helpers.png_b64(40, 30, (0, 255, 0))
    body = {
        "prompt": "greener",
        "init_images": [init],
        "mask": helpers.png_b64(40, 30, (0, 0, 0)),
        "denoising_strength": 0.4,
        "width": 128,
        "height": 96,
    }
    async with http.post(f"{emulator.url}{SD}/img2img", json=body) as response:
        assert response.status == 200
        result = await response.json()
    assert helpers.png_image(result["images"][0]).size == (128, 96)
    assert result["parameters"]["init_images"] is None
    assert result["parameters"]["denoising_strength"] == 0.4


async def test_img2img_without_init_image_is_404(emulator, http):
    async with http.post(f"{emulator.url}{SD}/img2img", json={"prompt": "x"}) as response:
        assert response.status == 404
        assert await response.json() == {
            "error": "HTTPException",
            "detail": "Init image not found",
            "body": "",
            "errors": "",
        }


async def test_img2img_with_garbage_image_is_500_error_shape(emulator, http):
    async with http.post(f"{emulator.url}{SD}/img2img", json={"init_images": ["%%%"]}) as resp:
        assert resp.status == 500
        body = await resp.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    assert body["detail"] == "Invalid encoded image"


async def test_extra_single_image_scales_by_factor_or_to_size(emulator, http, helpers):
    image = helpers.png_b64(50, 40, (10, 20, 30))
    by_factor = {"image": image, "resize_mode": 0, "upscaling_resize": 2, "upscaler_1": "Lanczos"}
    async with http.post(f"{emulator.url}{SD}/extra-single-image", json=by_factor) as response:
        result = await response.json()
    assert helpers.png_image(result["image"]).size == (100, 80)
    assert "html_info" in result
    to_size = {
        "image": image,
        "resize_mode": 1,
        "upscaling_resize_w": 64,
        "upscaling_resize_h": 48,
        "upscaler_1": "Nearest",
    }
    async with http.post(f"{emulator.url}{SD}/extra-single-image", json=to_size) as response:
        assert helpers.png_image((await response.json())["image"]).size == (64, 48)


async def test_extra_single_image_unknown_upscaler_is_500(emulator, http, helpers):
    body = {"image": helpers.png_b64(8, 8, (0, 0, 0)), "upscaler_1": "NoSuchUpscaler"}
    async with http.post(f"{emulator.url}{SD}/extra-single-image", json=body) as response:
        assert response.status == 500
        assert (await response.json())["error"] == "AssertionError"


async def test_extra_batch_images_returns_one_image_per_entry(emulator, http, helpers):
    body = {
        "imageList": [
            {"data": helpers.png_b64(10, 10, (1, 2, 3)), "name": "a.png"},
            {"data": helpers.png_b64(20, 10, (4, 5, 6)), "name": "b.png"},
        ],
        "upscaling_resize": 3,
        "upscaler_1": "Lanczos",
    }
    async with http.post(f"{emulator.url}{SD}/extra-batch-images", json=body) as response:
        images = (await response.json())["images"]
    assert [helpers.png_image(one).size for one in images] == [(30, 30), (60, 30)]


async def test_refresh_checkpoints_picks_up_new_model_files(http, tmp_path: Path):
    models = tmp_path / "Stable-diffusion"
    models.mkdir()
    async with running_emulator(models_dir=str(tmp_path)) as emulator:
        (models / "custom-v2.safetensors").write_bytes(b"not really weights")
        async with http.get(f"{emulator.url}{SD}/sd-models") as response:
            before = [model["title"] for model in await response.json()]
        async with http.post(f"{emulator.url}{SD}/refresh-checkpoints") as response:
            assert response.status == 200
        async with http.get(f"{emulator.url}{SD}/sd-models") as response:
            after = await response.json()
    assert not any(title.startswith("custom-v2") for title in before)
    custom = next(model for model in after if model["model_name"] == "custom-v2")
    assert set(custom) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert custom["filename"] == str(models / "custom-v2.safetensors")


async def test_options_switch_blocks_for_switch_latency_and_unknown_is_500(http):
    async with running_emulator(model_switch_latency_s=0.3) as emulator:
        started = time.monotonic()
        body = {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"}
        async with http.post(f"{emulator.url}{SD}/options", json=body) as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.3
        async with http.get(f"{emulator.url}{SD}/options") as response:
            assert (await response.json())["sd_model_checkpoint"].startswith("sd_xl_base_1.0")
        body = {"sd_model_checkpoint": "missing.safetensors"}
        async with http.post(f"{emulator.url}{SD}/options", json=body) as response:
            assert response.status == 500
            assert await response.json() == {
                "error": "RuntimeError",
                "detail": "",
                "body": "",
                "errors": "model 'missing.safetensors' not found",
            }
        assert emulator.state.stats.sdwebui.model_switches == 1


async def test_override_settings_checkpoint_is_per_request(emulator, http):
    body = {
        "prompt": "x",
        "width": 64,
        "height": 64,
        "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0"},
    }
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        info = json.loads((await response.json())["info"])
    assert info["sd_model_name"] == "sd_xl_base_1.0"
    async with http.get(f"{emulator.url}{SD}/options") as response:
        assert (await response.json())["sd_model_checkpoint"].startswith("v1-5-pruned-emaonly")
    async with http.post(f"{emulator.url}{SD}/txt2img", json={"width": 64, "height": 64}) as r:
        assert json.loads((await r.json())["info"])["sd_model_name"] == "v1-5-pruned-emaonly"


async def test_unload_checkpoint_forces_a_reload(emulator, http):
    async with http.post(f"{emulator.url}{SD}/unload-checkpoint") as response:
        assert await response.json() == {}
    async with http.post(f"{emulator.url}{SD}/txt2img", json={"width": 64, "height": 64}) as r:
        assert r.status == 200
    assert emulator.state.stats.sdwebui.model_switches == 1


async def test_generations_run_one_at_a_time_for_the_configured_latency(http):
    async with running_emulator(generation_latency_s=0.25) as emulator:

        async def generate() -> int:
            body = {"width": 64, "height": 64}
            async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
                return response.status

        started = time.monotonic()
        statuses = await asyncio.gather(generate(), generate())
        elapsed = time.monotonic() - started
        stats = emulator.state.stats.sdwebui
    assert list(statuses) == [200, 200]
    assert elapsed >= 0.5
    assert stats.peak_active_generations == 1
    assert stats.generations_completed == 2


async def test_progress_then_interrupt_answers_200_with_partial_image(http, helpers):
    async with running_emulator(generation_latency_s=10.0) as emulator:
        body = {
            "prompt": "long",
            "width": 64,
            "height": 64,
            "batch_size": 2,
            "n_iter": 3,
            "steps": 20,
        }
        generation = asyncio.create_task(http.post(f"{emulator.url}{SD}/txt2img", json=body))
        progress: dict = {}
        for _ in range(100):
            async with http.get(f"{emulator.url}{SD}/progress") as response:
                progress = await response.json()
            if progress["state"]["sampling_step"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert progress["state"]["job"] == "txt2img"
        assert 0 < progress["progress"] < 1
        async with http.post(f"{emulator.url}{SD}/interrupt") as response:
            assert await response.json() == {}
        async with await generation as response:
            assert response.status == 200
            result = await response.json()
        async with http.get(f"{emulator.url}{SD}/progress") as response:
            idle = await response.json()
        stats = emulator.state.stats.sdwebui
    assert len(result["images"]) == 2  # the first batch only, not 2 x 3
    assert helpers.png_image(result["images"][0]).size == (64, 64)
    assert idle["progress"] == 0 and idle["state"]["job"] == ""
    assert (stats.interrupts, stats.generations_interrupted) == (1, 1)


async def test_health_routes(emulator, http):
    async with http.get(f"{emulator.url}{SD}/memory") as response:
        memory = await response.json()
    assert memory["ram"]["total"] > 0
    # API-only mode (--api --nowebui) has no /internal/ping.
    async with http.get(f"{emulator.url}/internal/ping") as response:
        assert response.status == 404


async def test_stats_count_requests_per_route(emulator, http):
    for _ in range(2):
        async with http.get(f"{emulator.url}{SD}/options") as response:
            assert response.status == 200
    async with http.get(f"{emulator.url}/emulator/stats") as response:
        stats = await response.json()
    assert stats["requests"]["GET /sdapi/v1/options"] == 2
    assert stats["sdwebui"]["generations_started"] == 0


async def test_client_gone_mid_generation_frees_the_lock(http):
    async with running_emulator(generation_latency_s=30.0) as emulator:
        short = aiohttp.ClientTimeout(total=0.3)
        with pytest.raises(asyncio.TimeoutError):
            await http.post(f"{emulator.url}{SD}/txt2img", json={"width": 64}, timeout=short)
        await emulator_knobs(http, emulator.url, generation_latency_s=0.0)
        async with http.post(f"{emulator.url}{SD}/txt2img", json={"width": 64}) as response:
            assert response.status == 200
        assert emulator.state.stats.sdwebui.generations_interrupted == 1


async def emulator_knobs(http: aiohttp.ClientSession, url: str, **knobs: object) -> dict:
    async with http.post(f"{url}/emulator/knobs", json=knobs) as response:
        assert response.status == 200
        return await response.json()


# --- behaviours observed on the real v1.10.1 (see /work/shared/runtimes/README.md) --------


async def test_size_is_rounded_down_to_multiples_of_8(emulator, http, helpers):
    body = {"prompt": "x", "width": 100, "height": 71, "steps": 1}
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        result = await response.json()
    assert helpers.png_image(result["images"][0]).size == (96, 64)
    assert (result["parameters"]["width"], result["parameters"]["height"]) == (96, 64)


@pytest.mark.parametrize(
    ("asked", "used"),
    [("No Such Sampler", "DPM++ 2M"), (None, "Euler"), ("Euler a", "Euler a")],
)
async def test_unknown_sampler_falls_back_silently_to_the_default(emulator, http, asked, used):
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1, "sampler_name": asked}
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        assert response.status == 200
        result = await response.json()
    assert result["parameters"]["sampler_name"] == used
    assert json.loads(result["info"])["sampler_name"] == used


async def test_samplers_upscalers_and_scripts_are_listed(emulator, http):
    async with http.get(f"{emulator.url}{SD}/samplers") as response:
        samplers = [s["name"] for s in await response.json()]
    async with http.get(f"{emulator.url}{SD}/upscalers") as response:
        upscalers = [u["name"] for u in await response.json()]
    async with http.get(f"{emulator.url}{SD}/scripts") as response:
        scripts = await response.json()
    assert samplers[0] == "DPM++ 2M" and "Euler a" in samplers
    assert {"None", "Lanczos", "Nearest"} <= set(upscalers)
    assert scripts["txt2img"] == [
        "prompt matrix",
        "prompts from file or textbox",
        "x/y/z plot",
        "extra options",
        "Hypertile",
        "refiner",
        "sampler",
        "seed",
    ]
    assert "soft inpainting" in scripts["img2img"]
    assert "controlnet" not in scripts["txt2img"]


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("controlnet", "Script 'controlnet' not found"),
        ("sd_model_checkpoint", "Script 'sd_model_checkpoint' not found"),
        ("x/y/z plot", "Cannot have a selectable script in the always on scripts params"),
    ],
)
async def test_unknown_alwayson_script_is_422_naming_it(emulator, http, name, detail):
    body = {"prompt": "x", "width": 64, "height": 64, "alwayson_scripts": {name: {"args": []}}}
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        assert response.status == 422
        assert await response.json() == {
            "error": "HTTPException",
            "detail": detail,
            "body": "",
            "errors": "",  # as v1.10.1 renders an HTTPException
        }
    assert emulator.state.stats.sdwebui.generations_started == 0


async def test_known_alwayson_script_is_accepted(emulator, http):
    body = {"prompt": "x", "width": 64, "height": 64, "alwayson_scripts": {"Seed": {"args": []}}}
    async with http.post(f"{emulator.url}{SD}/txt2img", json=body) as response:
        assert response.status == 200


async def test_batch_images_need_a_name(emulator, http, helpers):
    image = helpers.png_b64(16, 16, (1, 2, 3))
    body = {"imageList": [{"data": image, "name": "a"}, {"data": image}], "upscaling_resize": 1}
    async with http.post(f"{emulator.url}{SD}/extra-batch-images", json=body) as response:
        assert response.status == 422
        detail = (await response.json())["detail"]
    assert detail == [
        {
            "loc": ["body", "imageList", 1, "name"],
            "msg": "field required",
            "type": "value_error.missing",
        }
    ]


async def test_unknown_upscaler_and_bad_image_are_500_with_the_error_body(emulator, http, helpers):
    body = {"image": helpers.png_b64(16, 16, (1, 2, 3)), "upscaler_1": "4x-Nope"}
    async with http.post(f"{emulator.url}{SD}/extra-single-image", json=body) as response:
        assert response.status == 500
        error = await response.json()
    assert error["error"] == "AssertionError"
    assert error["errors"] == "could not find upscaler named 4x-Nope"
    async with http.post(
        f"{emulator.url}{SD}/extra-single-image", json={"image": "%%%"}
    ) as response:
        assert response.status == 500
        assert (await response.json())["detail"] == "Invalid encoded image"
