"""Outputs on fakes: every kind ComfyUI v0.8.0 reports, what each output is (content type, kind,
size, dimensions), the image format choice, and the upload stage feeding the status row and the
notification."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import make_harness, task_body
from PIL import Image

from sdq_contracts.keys import image_key
from sdq_contracts.messages import OutputKind, TaskState
from sdq_contracts.requests import ImageFormat, OutputOptions
from sdq_queue_agent.domain import comfyui_graph, image_format
from sdq_queue_agent.domain.model import OutputFile, RuntimeRequest, RuntimeResult
from sdq_queue_agent.domain.output_media import HEAD_BYTES, Probe, by_filename, describe
from sdq_queue_agent.errors import OutputConversionError

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "data"
MP4 = (DATA / "pyav-h264-48x32.mp4").read_bytes()  # PyAV (ComfyUI's writer): moov after mdat
WEBM = (DATA / "pyav-vp9-48x32.webm").read_bytes()


def png(width: int = 40, height: int = 30, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    color: Any = (200, 10, 10, 0) if mode == "RGBA" else (200, 10, 10)
    Image.new(mode, (width, height), color).save(out, "PNG")
    return out.getvalue()


def animation(fmt: str, frames: int = 3) -> bytes:
    out = io.BytesIO()
    pictures = [Image.new("RGB", (24, 16), (i * 60, 0, 0)) for i in range(frames)]
    pictures[0].save(out, fmt, save_all=True, append_images=pictures[1:], duration=100)
    return out.getvalue()


# A history entry as ComfyUI v0.8.0 reports it (shapes from its execution.py and the save nodes:
# nodes.py SaveImage/PreviewImage/SaveLatent, comfy_api/latest/_ui.py SavedImages/SavedAudios/
# PreviewVideo/PreviewText, comfy_extras nodes_video.py, nodes_audio.py, nodes_images.py,
# nodes_hunyuan3d.py, nodes_preview_any.py).
SUB = "sdq/t1/ab12cd34"
HISTORY: dict[str, Any] = {
    "outputs": {
        "9": {"images": [{"filename": "img_00001_.png", "subfolder": SUB, "type": "output"}]},
        "10": {
            "images": [{"filename": "anim_00001_.webp", "subfolder": SUB, "type": "output"}],
            "animated": [True],
        },
        "11": {
            "images": [{"filename": "apng_00001_.png", "subfolder": SUB, "type": "output"}],
            "animated": [True],
        },
        "12": {
            "images": [{"filename": "clip_00001_.webm", "subfolder": SUB, "type": "output"}],
            "animated": [True],
        },
        "13": {
            "images": [{"filename": "clip_00001_.mp4", "subfolder": SUB, "type": "output"}],
            "animated": [True],
        },
        "14": {"audio": [{"filename": "sound_00001_.flac", "subfolder": SUB, "type": "output"}]},
        "15": {"audio": [{"filename": "sound_00002_.mp3", "subfolder": SUB, "type": "output"}]},
        "16": {"audio": [{"filename": "sound_00003_.opus", "subfolder": SUB, "type": "output"}]},
        "17": {"text": ["a caption"]},
        "18": {"text": ['{\n    "seed": 7\n}']},
        "19": {"3d": [{"filename": "mesh_00001_.glb", "subfolder": SUB, "type": "output"}]},
        "20": {"latents": [{"filename": "l_00001_.latent", "subfolder": SUB, "type": "output"}]},
        "21": {"images": [{"filename": "v_00001_.svg", "subfolder": SUB, "type": "output"}]},
        # Previews: ComfyUI's temp folder, not kept.
        "30": {
            "images": [
                {"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": "", "type": "temp"}
            ],
            "animated": [False],
        },
        "31": {
            "audio": [
                {"filename": "ComfyUI_temp_fghij_00001_.flac", "subfolder": "", "type": "temp"}
            ]
        },
    },
    "status": {"status_str": "success", "completed": True, "messages": []},
}


def test_every_kind_comfyui_saves_is_collected_in_node_order_and_previews_are_not() -> None:
    made = comfyui_graph.history_outputs(HISTORY)
    names = [m.filename if isinstance(m, comfyui_graph.OutputRef) else m.text for m in made]
    assert names == [
        "img_00001_.png",
        "anim_00001_.webp",
        "apng_00001_.png",
        "clip_00001_.webm",
        "clip_00001_.mp4",
        "sound_00001_.flac",
        "sound_00002_.mp3",
        "sound_00003_.opus",
        "a caption",
        '{\n    "seed": 7\n}',
        "mesh_00001_.glb",
        "l_00001_.latent",
        "v_00001_.svg",
    ]
    assert all(m.subfolder == SUB for m in made if isinstance(m, comfyui_graph.OutputRef))
    assert comfyui_graph.history_previews(HISTORY) == 2


@pytest.mark.parametrize(
    ("filename", "content_type", "ext"),
    [
        ("a.png", "image/png", "png"),
        ("a.webp", "image/webp", "webp"),
        ("a.mp4", "video/mp4", "mp4"),
        ("a.webm", "video/webm", "webm"),
        ("a.flac", "audio/flac", "flac"),
        ("a.mp3", "audio/mpeg", "mp3"),
        ("a.opus", "audio/ogg", "opus"),
        ("a.glb", "model/gltf-binary", "glb"),
        ("a.svg", "image/svg+xml", "svg"),
        ("a_00001_.latent", "application/octet-stream", "latent"),
        ("noext", "application/octet-stream", "bin"),
        ("a.we!rd", "application/octet-stream", "bin"),
    ],
)
def test_content_type_and_extension_by_file_name(
    filename: str, content_type: str, ext: str
) -> None:
    assert by_filename(filename) == (content_type, ext)


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (png(40, 30), "image/png", (OutputKind.IMAGE, 40, 30)),
        (animation("WEBP"), "image/webp", (OutputKind.ANIMATION, 24, 16)),
        (animation("PNG"), "image/png", (OutputKind.ANIMATION, 24, 16)),
        (animation("GIF"), "image/gif", (OutputKind.ANIMATION, 24, 16)),
        (animation("WEBP", frames=1), "image/webp", (OutputKind.IMAGE, 24, 16)),
        (MP4, "video/mp4", (OutputKind.VIDEO, 48, 32)),
        (WEBM, "video/webm", (OutputKind.VIDEO, 48, 32)),
        (b"fLaC\x00\x00", "audio/flac", (OutputKind.AUDIO, None, None)),
        (b"hello", "text/plain; charset=utf-8", (OutputKind.TEXT, None, None)),
        (b"glTF", "model/gltf-binary", (OutputKind.MODEL_3D, None, None)),
        (b"\x00\x01", "application/octet-stream", (OutputKind.OTHER, None, None)),
        (b"\x89PNG\r\n\x1a\nbroken", "image/png", (OutputKind.IMAGE, None, None)),
    ],
)
def test_kind_and_dimensions_read_from_the_bytes(
    data: bytes, content_type: str, expected: tuple[OutputKind, int | None, int | None]
) -> None:
    info = describe(data, content_type)
    assert (info.kind, info.width, info.height) == expected
    assert info.bytes == len(data)


@pytest.mark.parametrize(("data", "content_type"), [(MP4, "video/mp4"), (WEBM, "video/webm")])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_video_dimensions_survive_any_chunking(data: bytes, content_type: str, chunk: int) -> None:
    probe = Probe(content_type)
    for start in range(0, len(data), chunk):
        probe.feed(data[start : start + chunk])
    info = probe.finish()
    assert (info.kind, info.width, info.height, info.bytes) == (
        OutputKind.VIDEO,
        48,
        32,
        len(data),
    )


def test_a_large_video_keeps_only_its_moov_box_while_streaming() -> None:
    """An mdat of 64 MiB between ftyp and moov is counted, never kept."""
    ftyp, rest = MP4[:32], MP4[32:]
    mdat_payload = 64 * 1024 * 1024
    probe = Probe("video/mp4")
    probe.feed(ftyp)
    probe.feed((mdat_payload + 8).to_bytes(4, "big") + b"mdat")
    block = b"\x00" * (1024 * 1024)
    for _ in range(64):
        probe.feed(block)
    probe.feed(rest)
    info = probe.finish()
    assert (info.width, info.height) == (48, 32)
    assert info.bytes == 32 + 8 + mdat_payload + len(rest)
    assert probe._head is None


def test_an_animated_webp_larger_than_the_head_is_still_an_animation() -> None:
    data = animation("WEBP")
    # Pillow cannot open a truncated WebP; the VP8X header alone says animated and the canvas.
    probe = Probe("image/webp")
    probe.feed(data[:40])
    probe.size = HEAD_BYTES * 3
    info = probe.finish()
    assert (info.kind, info.width, info.height) == (OutputKind.ANIMATION, 24, 16)


# ----------------------------------------------------------------------------- format choice


def test_png_to_jpeg_with_quality_is_a_real_jpeg() -> None:
    stored = image_format.convert(
        png(40, 30), "image/png", "png", OutputOptions(format=ImageFormat.JPEG, quality=50)
    )
    assert (stored.content_type, stored.ext, stored.width, stored.height) == (
        "image/jpeg",
        "jpg",
        40,
        30,
    )
    with Image.open(io.BytesIO(stored.data)) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (40, 30), "RGB")
        red, _, _ = im.convert("RGB").getpixel((5, 5))  # type: ignore[misc]
        assert red > 150


def test_transparent_png_to_jpeg_is_flattened_on_white_and_to_webp_keeps_alpha() -> None:
    source = png(8, 8, "RGBA")  # fully transparent
    jpeg = image_format.convert(source, "image/png", "png", OutputOptions(format=ImageFormat.JPEG))
    with Image.open(io.BytesIO(jpeg.data)) as im:
        assert all(v > 245 for v in im.convert("RGB").getpixel((4, 4)))  # type: ignore[union-attr]
    webp = image_format.convert(source, "image/png", "png", OutputOptions(format=ImageFormat.WEBP))
    assert (webp.content_type, webp.ext) == ("image/webp", "webp")
    with Image.open(io.BytesIO(webp.data)) as im:
        assert im.format == "WEBP" and im.mode == "RGBA"
        assert im.getpixel((4, 4))[3] == 0  # type: ignore[index]


def test_an_image_already_in_the_format_is_kept_byte_for_byte_unless_a_quality_is_asked() -> None:
    source = png()
    kept = image_format.convert(source, "image/png", "png", OutputOptions())
    assert kept.data == source and kept.content_type == "image/png"
    jpeg = image_format.convert(source, "image/png", "png", OutputOptions(format=ImageFormat.JPEG))
    again = image_format.convert(
        jpeg.data, "image/jpeg", "jpg", OutputOptions(format=ImageFormat.JPEG, quality=20)
    )
    assert again.data != jpeg.data and again.content_type == "image/jpeg"


def test_animations_are_kept_as_made() -> None:
    source = animation("WEBP")
    kept = image_format.convert(
        source, "image/webp", "webp", OutputOptions(format=ImageFormat.JPEG)
    )
    assert (kept.data, kept.content_type, kept.animated) == (source, "image/webp", True)


def test_an_unreadable_image_is_a_permanent_conversion_error() -> None:
    with pytest.raises(OutputConversionError) as caught:
        image_format.convert(
            b"\x89PNG\r\n\x1a\ngarbage", "image/png", "png", OutputOptions(format=ImageFormat.WEBP)
        )
    assert caught.value.permanent and caught.value.code == "output_conversion_failed"
    assert "webp" in caught.value.message and "not a readable image" in caught.value.message


def test_only_raster_images_are_candidates() -> None:
    options = OutputOptions(format=ImageFormat.JPEG)
    assert image_format.wants_conversion(options, "image/png")
    assert not image_format.wants_conversion(None, "image/png")
    for content_type in ("video/mp4", "audio/flac", "image/svg+xml", "text/plain"):
        assert not image_format.wants_conversion(options, content_type)


# ----------------------------------------------------------------------------- upload stage


def _source(data: bytes, chunk: int = 1000) -> Any:
    async def chunks() -> AsyncGenerator[bytes, None]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


def _every_kind() -> tuple[OutputFile, ...]:
    return (
        OutputFile(None, "image/png", "png", source=_source(png(40, 30))),
        OutputFile(None, "image/webp", "webp", source=_source(animation("WEBP"))),
        OutputFile(None, "video/mp4", "mp4", source=_source(MP4, 100)),
        OutputFile(None, "audio/flac", "flac", source=_source(b"fLaC" + b"\x00" * 50)),
        OutputFile(b'{"seed": 7}', "application/json", "json"),
        OutputFile(png(10, 10), "image/png", "png"),  # in memory (SD WebUI, InvokeAI)
    )


def _returning(result: RuntimeResult) -> Any:
    async def behaviour(request: RuntimeRequest) -> RuntimeResult:
        return result

    return behaviour


async def test_every_output_is_stored_and_listed_in_the_row_and_the_notification() -> None:
    h = make_harness()
    cleaned: list[str] = []

    async def after_upload() -> None:
        cleaned.append("t1")

    h.runtime.behaviours["t1"] = _returning(
        RuntimeResult(files=_every_kind(), response={"x": 1}, after_upload=after_upload)
    )
    h.queue.send(task_body("t1"))
    await h.burst()

    [note] = h.publisher.published
    assert note.status is TaskState.COMPLETED
    exts = ["png", "webp", "mp4", "flac", "json", "png"]
    urls = [f"s3://outputs/{image_key('out', 't1', n, ext)}" for n, ext in enumerate(exts, 1)]
    assert note.image_url == urls
    described = [(f.kind, f.content_type, f.width, f.height) for f in note.files]
    assert described == [
        (OutputKind.IMAGE, "image/png", 40, 30),
        (OutputKind.ANIMATION, "image/webp", 24, 16),
        (OutputKind.VIDEO, "video/mp4", 48, 32),
        (OutputKind.AUDIO, "audio/flac", None, None),
        (OutputKind.TEXT, "application/json", None, None),
        (OutputKind.IMAGE, "image/png", 10, 10),
    ]
    for url, file in zip(urls, note.files, strict=True):
        data, content_type = h.store.objects[("outputs", url.removeprefix("s3://outputs/"))]
        assert (file.url, file.bytes, file.content_type) == (url, len(data), content_type)
        assert file.download_url is None  # links are signed elsewhere, never stored
    assert h.store.objects[("outputs", image_key("out", "t1", 3, "mp4"))][0] == MP4
    row = h.status.record("t1")
    assert row.outputs == urls and row.files == note.files
    assert "download_url" not in json.dumps(h.status.rows["t1"]["files"])
    assert cleaned == ["t1"]


async def test_the_format_choice_converts_stills_and_keeps_everything_else() -> None:
    h = make_harness()
    h.runtime.behaviours["t1"] = _returning(RuntimeResult(files=_every_kind()))
    h.queue.send(task_body("t1", output={"format": "webp", "quality": 70}))
    await h.burst()

    [note] = h.publisher.published
    assert [f.content_type for f in note.files] == [
        "image/webp",  # converted
        "image/webp",  # the animation, kept
        "video/mp4",
        "audio/flac",
        "application/json",
        "image/webp",  # converted (in memory)
    ]
    assert note.files[0].url.endswith("-1.webp") and note.files[5].url.endswith("-6.webp")
    for n in (1, 6):
        data, content_type = h.store.objects[("outputs", image_key("out", "t1", n, "webp"))]
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "WEBP" and content_type == "image/webp"
            assert im.size == (note.files[n - 1].width, note.files[n - 1].height)
    assert h.store.objects[("outputs", image_key("out", "t1", 2, "webp"))][0] == animation("WEBP")


async def test_a_conversion_failure_fails_the_task_permanently_and_still_cleans_up() -> None:
    h = make_harness()
    cleaned: list[str] = []

    async def after_upload() -> None:
        cleaned.append("t1")

    broken = OutputFile(None, "image/png", "png", source=_source(b"\x89PNG\r\n\x1a\nbroken"))
    h.runtime.behaviours["t1"] = _returning(
        RuntimeResult(files=(broken,), after_upload=after_upload)
    )
    h.queue.send(task_body("t1", output={"format": "jpeg"}))
    await h.burst()

    [note] = h.publisher.published
    assert note.status is TaskState.FAILED and note.files == [] and note.image_url == []
    assert note.error is not None and note.error.code == "output_conversion_failed"
    assert note.error.permanent and "jpeg" in note.error.message
    assert h.runtime.runs == {"t1": 1}  # not retried
    assert h.queue.deleted == ["m1"]
    assert cleaned == ["t1"]


async def test_streamed_outputs_go_through_the_stream_path_and_in_memory_ones_through_put() -> None:
    h = make_harness()
    h.runtime.behaviours["t1"] = _returning(RuntimeResult(files=_every_kind()))
    h.queue.send(task_body("t1"))
    await h.burst()
    assert sorted(h.store.streamed) == sorted(
        image_key("out", "t1", n, ext)
        for n, ext in enumerate(["png", "webp", "mp4", "flac"], start=1)
    )


async def test_an_image_too_large_to_convert_fails_but_a_large_animation_is_kept_as_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sdq_queue_agent.domain import outcomes

    monkeypatch.setattr(outcomes, "MAX_CONVERT_BYTES", 50)
    h = make_harness()
    still = OutputFile(None, "image/png", "png", source=_source(png(40, 30), 20), name="a.png")
    moving = OutputFile(None, "image/webp", "webp", source=_source(animation("WEBP"), 20))
    h.runtime.behaviours["t1"] = _returning(RuntimeResult(files=(moving,)))
    h.runtime.behaviours["t2"] = _returning(RuntimeResult(files=(still,)))
    h.queue.send(task_body("t1", output={"format": "jpeg"}))
    h.queue.send(task_body("t2", output={"format": "jpeg"}))
    await h.burst()

    notes = {n.id: n for n in h.publisher.published}
    [kept] = notes["t1"].files
    assert (kept.kind, kept.content_type, kept.width, kept.bytes) == (
        OutputKind.ANIMATION,
        "image/webp",
        24,
        len(animation("WEBP")),
    )
    key = image_key("out", "t1", 1, "webp")
    assert h.store.objects[("outputs", key)][0] == animation("WEBP") and key in h.store.streamed
    failed = notes["t2"]
    assert failed.status is TaskState.FAILED and failed.error is not None
    assert failed.error.code == "output_conversion_failed" and failed.error.permanent
    assert "a.png" in failed.error.message and "too large to convert" in failed.error.message
