"""The whole agent against the moto server and a ComfyUI stand-in that makes every output kind:
objects in S3 with their content type and size, the status row's and the notification's
``files``, multipart for a large video, and the format choice."""

from __future__ import annotations

import io
import urllib.request
from typing import Any

import pytest
from agent_stack import Stack, task
from comfyui_outputs_server import FLAC, MP4, WEBM, animated_webp, running_fake_comfy
from PIL import Image

from sdq_contracts.keys import image_key

pytestmark = pytest.mark.integration


def _save(class_type: str, prefix: str, **inputs: Any) -> dict[str, Any]:
    return {
        "class_type": class_type,
        "inputs": {"images": ["1", 0], "filename_prefix": prefix, **inputs},
    }


def _graph(**video: Any) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0},
        },
        "2": _save("SaveImage", "still"),
        "3": _save(
            "SaveAnimatedWEBP", "anim", fps=6.0, lossless=False, quality=80, method="default"
        ),
        "4": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["1", 0], "filename_prefix": "video/clip", **video},
        },
        "5": _save("SaveWEBM", "webm", codec="vp9", fps=24.0, crf=32.0),
        "6": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["1", 0], "filename_prefix": "audio/a"},
        },
        "7": {"class_type": "PreviewAny", "inputs": {"source": "a caption"}},
        "9": {"class_type": "PreviewAny", "inputs": {"source": '{"seed": 7}'}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def _head(stack: Stack, key: str) -> dict[str, Any]:
    return stack.client("s3").head_object(Bucket=stack.prov.output_bucket, Key=key)  # type: ignore[no-any-return]


async def test_every_kind_lands_in_s3_the_row_and_the_notification(stack: Stack) -> None:
    async with running_fake_comfy() as comfy:
        stack.submit(task("kinds", runtime="comfyui", tasktype="pipeline", content=_graph()))
        assert await stack.run_burst("comfyui", comfy.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed", note.get("error")
    expected = [
        ("png", "image", "image/png", (64, 48)),
        ("webp", "animation", "image/webp", (32, 24)),
        ("mp4", "video", "video/mp4", (48, 32)),
        ("webm", "video", "video/webm", (48, 32)),
        ("flac", "audio", "audio/flac", (None, None)),
        ("txt", "text", "text/plain; charset=utf-8", (None, None)),
        ("json", "text", "application/json", (None, None)),
    ]
    keys = [image_key("itest", "kinds", n, ext) for n, (ext, *_) in enumerate(expected, start=1)]
    bucket = stack.prov.output_bucket
    assert note["image_url"] == [f"s3://{bucket}/{key}" for key in keys]
    files = note["files"]
    assert [(f["kind"], f["content_type"], (f.get("width"), f.get("height"))) for f in files] == [
        (kind, content_type, size) for _, kind, content_type, size in expected
    ]
    objects = stack.objects("itest/kinds/")
    for key, file in zip(keys, files, strict=True):
        head = _head(stack, key)
        assert head["ContentType"] == file["content_type"]
        assert head["ContentLength"] == file["bytes"] == len(objects[key])
        # The notification's link fetches the very object without credentials.
        assert file["download_expires_at"]
        with urllib.request.urlopen(file["download_url"], timeout=10) as answer:
            assert answer.read() == objects[key]
    assert objects[keys[2]] == MP4 and objects[keys[3]] == WEBM and objects[keys[4]] == FLAC
    assert objects[keys[1]] == animated_webp()
    assert objects[keys[5]] == b"a caption" and objects[keys[6]] == b'{"seed": 7}'
    row = stack.status("kinds")
    assert row.outputs == note["image_url"]
    # The row holds the same metadata, without links.
    unlinked = [
        {k: v for k, v in f.items() if k not in ("download_url", "download_expires_at")}
        for f in files
    ]
    assert [f.model_dump(mode="json", exclude_none=True) for f in row.files] == unlinked
    assert all(f.download_url is None for f in row.files)
    # The preview (type temp) is not an output: never fetched.
    assert "ComfyUI_temp_x_00001_.png" not in comfy.views


async def test_a_large_video_uploads_as_multipart_with_its_metadata(stack: Stack) -> None:
    size = 11 * 1024 * 1024 + 123  # three 5 MiB parts
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["1", 0], "filename_prefix": "v", "bytes": size},
        },
    }
    async with running_fake_comfy() as comfy:
        stack.submit(task("big", runtime="comfyui", tasktype="pipeline", content=graph))
        assert await stack.run_burst("comfyui", comfy.url, upload_part_mib=5) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed", note.get("error")
    [file] = note["files"]
    key = image_key("itest", "big", 1, "mp4")
    assert (file["kind"], file["bytes"], file["width"], file["height"]) == ("video", size, 48, 32)
    head = _head(stack, key)
    assert head["ContentLength"] == size and head["ContentType"] == "video/mp4"
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts
    uploads = stack.client("s3").list_multipart_uploads(Bucket=stack.prov.output_bucket)
    assert not uploads.get("Uploads")  # completed, none left open


async def test_the_format_choice_stores_jpeg_stills_and_keeps_the_rest(stack: Stack) -> None:
    async with running_fake_comfy() as comfy:
        stack.submit(
            task(
                "fmt",
                runtime="comfyui",
                tasktype="pipeline",
                content=_graph(),
                output={"format": "jpeg", "quality": 80},
            )
        )
        assert await stack.run_burst("comfyui", comfy.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "completed", note.get("error")
    files = note["files"]
    assert [f["content_type"] for f in files[:3]] == ["image/jpeg", "image/webp", "video/mp4"]
    jpeg_key = image_key("itest", "fmt", 1, "jpg")
    assert files[0]["url"].endswith(jpeg_key)
    data = stack.objects("itest/fmt/")[jpeg_key]
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size) == ("JPEG", (64, 48))
    assert _head(stack, jpeg_key)["ContentType"] == "image/jpeg"
    assert files[0]["bytes"] == len(data)


async def test_a_workflow_with_only_previews_fails_and_says_why(stack: Stack) -> None:
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    async with running_fake_comfy() as comfy:
        stack.submit(task("previews", runtime="comfyui", tasktype="pipeline", content=graph))
        assert await stack.run_burst("comfyui", comfy.url) == 0
    [note] = stack.notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_rejected"
    assert "without saving any output" in note["error"]["message"]
    assert "1 preview file(s)" in note["error"]["message"]
    assert stack.objects("itest/previews/") == {}
