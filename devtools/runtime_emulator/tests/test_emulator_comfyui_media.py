"""ComfyUI animation, video, audio and text outputs of the runtime emulator: history entries in
ComfyUI v0.8.0's shapes, and /view serving real files (decoded here with Pillow and PyAV)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import pytest
from PIL import Image

from sdq_runtime_emulator import workflows

pytestmark = pytest.mark.integration


async def post_prompt(http: Any, url: str, prompt: dict, **extra: Any) -> tuple[int, dict]:
    async with http.post(f"{url}/prompt", json={"prompt": prompt, **extra}) as response:
        return response.status, await response.json()


async def wait_history(http: Any, url: str, prompt_id: str) -> dict[str, Any]:
    for _ in range(400):
        async with http.get(f"{url}/history/{prompt_id}") as response:
            entry = await response.json()
        if entry:
            return entry[prompt_id]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no history for {prompt_id}")


async def run(http: Any, url: str, prompt: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    status, body = await post_prompt(http, url, prompt, client_id="media", prompt_id=prompt_id)
    assert status == 200, body
    entry = await wait_history(http, url, prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


async def fetch(http: Any, url: str, saved: dict[str, str]) -> tuple[str, bytes]:
    async with http.get(f"{url}/view", params=saved) as response:
        assert response.status == 200
        return response.headers["Content-Type"], await response.read()


def frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def video_facts(data: bytes) -> tuple[str, str, int, int, int]:
    """(container, codec, width, height, decoded frames) of a video file."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        decoded = len(list(container.decode(stream)))
        return (
            container.format.name,
            stream.codec_context.name,
            stream.codec_context.width,
            stream.codec_context.height,
            decoded,
        )


async def test_animated_webp_and_image_outputs(emulator, http):
    url = emulator.url
    prompt = workflows.animation_and_image(
        width=48, height=32, frame_count=3, filename_prefix="t/a"
    )
    entry = await run(http, url, prompt, "anim-1")

    assert entry["outputs"]["3"] == {
        "images": [{"filename": "a_anim_00001_.webp", "subfolder": "t", "type": "output"}],
        "animated": [True],
    }
    assert entry["outputs"]["4"] == {
        "images": [
            {"filename": f"a_{n:05}_.png", "subfolder": "t", "type": "output"} for n in (1, 2, 3)
        ]
    }
    content_type, data = await fetch(http, url, entry["outputs"]["3"]["images"][0])
    assert content_type == "image/webp"
    with Image.open(io.BytesIO(data)) as animation:
        assert (animation.format, animation.size, frame_count(animation)) == ("WEBP", (48, 32), 3)
        # Frames alternate 0x3366CC and 0xCC9933 (lossy WebP: close, not exact).
        for index, (red, green, blue) in enumerate(((0x33, 0x66, 0xCC), (0xCC, 0x99, 0x33))):
            animation.seek(index)
            got = animation.convert("RGB").getpixel((10, 10))
            assert isinstance(got, tuple)
            assert all(abs(a - b) < 12 for a, b in zip(got, (red, green, blue), strict=True))
    content_type, data = await fetch(http, url, entry["outputs"]["4"]["images"][0])
    assert content_type == "image/png"
    with Image.open(io.BytesIO(data)) as still:
        assert (still.format, still.size) == ("PNG", (48, 32))


async def test_single_frame_animation_is_not_flagged_animated(emulator, http):
    prompt = workflows.animation_and_image(frame_count=1)
    entry = await run(http, emulator.url, prompt, "anim-single")
    assert entry["outputs"]["3"] == {
        "images": [{"filename": "ComfyUI_anim_00001_.webp", "subfolder": "", "type": "output"}]
    }


async def test_animated_png(emulator, http):
    prompt = workflows.frames(frame_count=2) | {
        "3": {
            "class_type": "SaveAnimatedPNG",
            "inputs": {
                "images": [workflows.frames_node(2), 0],
                "filename_prefix": "apng",
                "fps": 4.0,
                "compress_level": 4,
            },
        }
    }
    entry = await run(http, emulator.url, prompt, "apng-1")
    saved = {"filename": "apng_00001_.png", "subfolder": "", "type": "output"}
    assert entry["outputs"]["3"] == {"images": [saved], "animated": [True]}
    content_type, data = await fetch(http, emulator.url, saved)
    assert content_type == "image/png"
    with Image.open(io.BytesIO(data)) as animation:
        assert (animation.format, frame_count(animation), animation.info["duration"]) == (
            "PNG",
            2,
            250,
        )


async def test_mp4_and_webm_videos(emulator, http):
    prompt = workflows.video(width=64, height=48, frame_count=5, filename_prefix="v/clip")
    entry = await run(http, emulator.url, prompt, "video-1")

    mp4 = {"filename": "clip_video_00001_.mp4", "subfolder": "v", "type": "output"}
    webm = {"filename": "clip_webm_00001_.webm", "subfolder": "v", "type": "output"}
    assert entry["outputs"]["4"] == {"images": [mp4], "animated": [True]}
    assert entry["outputs"]["5"] == {"images": [webm], "animated": [True]}
    content_type, data = await fetch(http, emulator.url, mp4)
    assert content_type == "video/mp4"
    container, codec, width, height, decoded = video_facts(data)
    assert "mp4" in container and codec == "h264"
    assert (width, height, decoded) == (64, 48, 5)
    content_type, data = await fetch(http, emulator.url, webm)
    assert content_type == "video/webm"
    container, codec, width, height, decoded = video_facts(data)
    assert "webm" in container and codec in {"vp9", "libvpx-vp9"}
    assert (width, height, decoded) == (64, 48, 5)


async def test_save_video_keeps_the_default_video_subfolder(emulator, http):
    prompt = workflows.video(frame_count=2)
    prompt["4"]["inputs"]["filename_prefix"] = "video/ComfyUI"
    del prompt["5"]
    entry = await run(http, emulator.url, prompt, "video-default")
    assert entry["outputs"]["4"]["images"] == [
        {"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}
    ]


async def test_flac_audio(emulator, http):
    entry = await run(http, emulator.url, workflows.audio(duration=0.25), "audio-1")
    saved = {"filename": "ComfyUI_audio_00001_.flac", "subfolder": "", "type": "output"}
    assert entry["outputs"]["2"] == {"audio": [saved]}
    content_type, data = await fetch(http, emulator.url, saved)
    assert content_type == "audio/flac"
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(int(frame.samples) for frame in container.decode(stream))
        assert (container.format.name, stream.codec_context.name) == ("flac", "flac")
        assert (stream.codec_context.sample_rate, samples) == (8000, 2000)


async def test_image_batch_joins_and_fits_the_second_batch(emulator, http):
    prompt = workflows.frames(width=40, height=30, frame_count=2)
    prompt["2"]["inputs"].update(width=80, height=20, batch_size=2)
    prompt["9"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [workflows.frames_node(2), 0], "filename_prefix": "batch"},
    }
    entry = await run(http, emulator.url, prompt, "batch-1")
    images = entry["outputs"]["9"]["images"]
    assert [one["filename"] for one in images] == [f"batch_{n:05}_.png" for n in (1, 2, 3)]
    for saved in images:
        _, data = await fetch(http, emulator.url, saved)
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (40, 30)


async def test_text_output_has_no_file(emulator, http):
    entry = await run(http, emulator.url, workflows.text("a caption, 42"), "text-1")
    assert entry["outputs"] == {"2": {"text": ["a caption, 42"]}}


async def test_preview_any_takes_a_literal(emulator, http):
    prompt = {"1": {"class_type": "PreviewAny", "inputs": {"source": "plain"}}}
    entry = await run(http, emulator.url, prompt, "text-literal")
    assert entry["outputs"]["1"] == {"text": ["plain"]}


async def test_one_counter_per_prefix_whatever_the_extension(emulator, http):
    """ComfyUI numbers a prefix's files across kinds: an image after an animation is _00002_."""
    prompt = workflows.animation_and_image(frame_count=2)
    prompt["4"]["inputs"]["filename_prefix"] = "ComfyUI_anim"
    entry = await run(http, emulator.url, prompt, "counter-1")
    names = sorted(
        saved["filename"] for node in ("3", "4") for saved in entry["outputs"][node]["images"]
    )
    assert len(set(names)) == 3
    assert all(name.startswith("ComfyUI_anim_0000") for name in names)


async def test_wrong_link_type_into_save_video_is_a_validation_error(emulator, http):
    prompt = workflows.video()
    prompt["4"]["inputs"]["video"] = ["2", 0]  # IMAGE, not VIDEO
    status, body = await post_prompt(http, emulator.url, prompt, prompt_id="bad-video")
    assert status == 200  # node 5 (SaveWEBM) is valid and runs
    errors = body["node_errors"]["4"]["errors"]
    assert errors[0]["type"] == "return_type_mismatch"
    assert "received_type(IMAGE) mismatch input_type(VIDEO)" in errors[0]["details"]


async def test_unknown_webm_codec_is_value_not_in_list(emulator, http):
    prompt = workflows.video()
    prompt["5"]["inputs"]["codec"] = "h265"
    status, body = await post_prompt(http, emulator.url, prompt, prompt_id="bad-codec")
    assert status == 200
    assert body["node_errors"]["5"]["errors"][0]["type"] == "value_not_in_list"


async def test_object_info_lists_the_media_nodes(emulator, http):
    async with http.get(f"{emulator.url}/object_info") as response:
        info = await response.json()
    webp = info["SaveAnimatedWEBP"]
    assert webp["output_node"] is True and webp["category"] == "image/animation"
    assert webp["input"]["required"]["method"][0] == ["default", "fastest", "slowest"]
    assert info["SaveVideo"]["input"]["required"]["format"][0] == ["auto", "mp4"]
    assert info["CreateVideo"]["output"] == ["VIDEO"]
    assert info["CreateVideo"]["input"]["optional"] == {"audio": ["AUDIO"]}
    assert info["PreviewAny"]["input"]["required"]["source"] == ["*"]


async def test_jobs_count_saved_files_only(emulator, http):
    """v0.8.0's outputs_count skips the ``animated`` flag and text (items that are not dicts)."""
    await run(http, emulator.url, workflows.animation_and_image(frame_count=3), "count-anim")
    await run(http, emulator.url, workflows.text("words"), "count-text")
    counts = {}
    for prompt_id in ("count-anim", "count-text"):
        async with http.get(f"{emulator.url}/api/jobs/{prompt_id}") as response:
            counts[prompt_id] = (await response.json())["outputs_count"]
    assert counts == {"count-anim": 4, "count-text": 0}


async def test_video_with_a_soundtrack(emulator, http):
    prompt = workflows.video(frame_count=4) | {
        "30": {
            "class_type": "EmptyAudio",
            "inputs": {"duration": 5.0, "sample_rate": 16000, "channels": 2},
        }
    }
    prompt["3"]["inputs"]["audio"] = ["30", 0]
    del prompt["5"]
    entry = await run(http, emulator.url, prompt, "video-audio")
    _, data = await fetch(http, emulator.url, entry["outputs"]["4"]["images"][0])
    with av.open(io.BytesIO(data), mode="r") as container:
        [video], [audio] = container.streams.video, container.streams.audio
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert audio.codec_context.sample_rate == 16000
        # Cut to the frames' length: 4 frames at 8 fps are half a second, not the clip's 5 s.
        samples = sum(int(frame.samples) for frame in container.decode(audio))
        assert samples <= 16000 * 0.5 + 2048


async def test_webm_in_av1(emulator, http):
    prompt = workflows.video(width=64, height=64, frame_count=2)
    prompt["5"]["inputs"]["codec"] = "av1"
    del prompt["4"], prompt["3"]
    entry = await run(http, emulator.url, prompt, "webm-av1")
    _, data = await fetch(http, emulator.url, entry["outputs"]["5"]["images"][0])
    container, codec, width, height, decoded = video_facts(data)
    assert "webm" in container and codec in {"av1", "libdav1d", "libaom-av1"}
    assert (width, height, decoded) == (64, 64, 2)
