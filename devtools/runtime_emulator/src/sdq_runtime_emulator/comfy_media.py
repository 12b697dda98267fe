"""Animation, video, audio and text nodes of the emulated ComfyUI — sdq runtime EMULATOR.

The core save nodes of ComfyUI v0.8.0 that write something other than a PNG, with their real
input specs, file names and history entries (``comfy_extras/nodes_images.py``,
``nodes_video.py``, ``nodes_audio.py``, ``nodes_preview_any.py``, ``comfy_api/latest/_ui.py``):

- ``SaveAnimatedWEBP`` / ``SaveAnimatedPNG``: one animated file for the whole batch,
  ``{"images": [...], "animated": [true]}`` (no ``animated`` key for a single frame);
- ``SaveWEBM`` (VP9 or AV1 in WebM) and ``CreateVideo`` → ``SaveVideo`` (H.264 in MP4): one
  video file, reported like an animation, ``{"images": [...], "animated": [true]}``;
- ``EmptyAudio`` → ``SaveAudio``: one FLAC file per batch item, ``{"audio": [...]}``;
- ``PrimitiveString`` → ``PreviewAny``: no file, ``{"text": ["..."]}``.

The files are real (Pillow for the animations, PyAV — which ComfyUI itself uses — for video
and audio), small, and carry no prompt metadata. Node functions are blocking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from PIL import Image

from sdq_runtime_emulator import render
from sdq_runtime_emulator.comfy_spec import (
    InputSpec,
    NodeFailure,
    NodeSpec,
    Result,
    RunContext,
    SaveTarget,
    next_counter,
    output_folder,
)
from sdq_runtime_emulator.comfy_spec import int_opts as _int

WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}
WEBM_CODECS = {"vp9": "libvpx-vp9", "av1": "libsvtav1"}
AUDIO_CHANNELS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class Audio:
    """ComfyUI's AUDIO value: ``batch`` clips of ``samples`` float samples per channel."""

    sample_rate: int
    channels: int
    samples: int
    batch: int = 1


@dataclass(frozen=True)
class Video:
    """ComfyUI's VIDEO value as ``CreateVideo`` builds it: frames, a rate, optional audio."""

    frames: tuple[Image.Image, ...]
    frame_rate: Fraction
    audio: Audio | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size


def _saved(name: str, subfolder: str) -> dict[str, str]:
    return {"filename": name, "subfolder": subfolder, "type": "output"}


def _frames(pictures: list[render.Picture]) -> list[Image.Image]:
    return [picture.image.convert("RGB") for picture in pictures]


def _animated_ui(saved: dict[str, str], frames: int) -> dict[str, Any]:
    """``SavedImages(..., is_animated=len(images) > 1).as_dict()``."""
    return {"images": [saved], "animated": [True]} if frames > 1 else {"images": [saved]}


def _save_animated_webp(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    frames = _frames(inputs["images"])
    folder, base, subfolder = output_folder(_output(ctx), str(inputs["filename_prefix"]))
    name = f"{base}_{next_counter(folder, base):05}_.webp"
    frames[0].save(
        folder / name,
        format="WEBP",
        save_all=True,
        duration=int(1000.0 / float(inputs["fps"])),
        append_images=frames[1:],
        lossless=bool(inputs["lossless"]),
        quality=int(inputs["quality"]),
        method=WEBP_METHODS[inputs["method"]],
    )
    return (), _animated_ui(_saved(name, subfolder), len(frames))


def _save_animated_png(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    frames = _frames(inputs["images"])
    folder, base, subfolder = output_folder(_output(ctx), str(inputs["filename_prefix"]))
    name = f"{base}_{next_counter(folder, base):05}_.png"
    frames[0].save(
        folder / name,
        format="PNG",
        save_all=True,
        duration=int(1000.0 / float(inputs["fps"])),
        append_images=frames[1:],
        compress_level=int(inputs["compress_level"]),
    )
    return (), _animated_ui(_saved(name, subfolder), len(frames))


def _save_webm(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    frames = _frames(inputs["images"])
    folder, base, subfolder = output_folder(_output(ctx), str(inputs["filename_prefix"]))
    name = f"{base}_{next_counter(folder, base):05}_.webm"
    rate = Fraction(round(float(inputs["fps"]) * 1000), 1000)
    codec = str(inputs["codec"])
    with av.open(str(folder / name), mode="w") as container:
        stream = container.add_stream(WEBM_CODECS[codec], rate=rate)
        if not isinstance(stream, av.VideoStream):  # pragma: no cover - both codecs are video
            raise NodeFailure("ValueError", f"{codec} is not a video codec")
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p10le" if codec == "av1" else "yuv420p"
        stream.bit_rate = 0
        options: dict[str, object] = {"crf": str(inputs["crf"])}
        if codec == "av1":
            options["preset"] = "6"
        stream.options = options
        for frame in frames:
            container.mux(stream.encode(_video_frame(frame)))
        container.mux(stream.encode(None))
    return (), {"images": [_saved(name, subfolder)], "animated": [True]}


def _video_frame(image: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame


def _create_video(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    frames = tuple(_frames(inputs["images"]))
    return (Video(frames, Fraction(float(inputs["fps"])), inputs.get("audio")),), None


def _save_video(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    video: Video = inputs["video"]
    folder, base, subfolder = output_folder(_output(ctx), str(inputs["filename_prefix"]))
    name = f"{base}_{next_counter(folder, base):05}_.mp4"
    width, height = video.size
    if width % 2 or height % 2:
        # libx264 refuses odd sizes in yuv420p; ComfyUI surfaces the encoder's error.
        raise NodeFailure(
            "ValueError", f"width and height must be even for H.264: {width}x{height}"
        )
    rate = Fraction(round(video.frame_rate * 1000), 1000)
    with av.open(str(folder / name), mode="w", options={"movflags": "use_metadata_tags"}) as out:
        stream = out.add_stream("h264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        audio = None
        if video.audio is not None:
            audio = out.add_stream("aac", rate=video.audio.sample_rate)
        for frame in video.frames:
            out.mux(stream.encode(_video_frame(frame).reformat(format="yuv420p")))
        out.mux(stream.encode(None))
        if audio is not None and video.audio is not None:
            # As ComfyUI: the soundtrack is cut to the length of the frames.
            length = -(-video.audio.sample_rate * len(video.frames) // video.frame_rate)
            clip = Audio(
                video.audio.sample_rate, video.audio.channels, min(length, video.audio.samples)
            )
            out.mux(audio.encode(_silence(clip)))
            out.mux(audio.encode(None))
    return (), {"images": [_saved(name, subfolder)], "animated": [True]}


def _empty_audio(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    rate = int(inputs["sample_rate"])
    samples = round(float(inputs["duration"]) * rate)
    return (Audio(rate, int(inputs["channels"]), samples),), None


def _silence(audio: Audio) -> av.AudioFrame:
    """One frame of float samples, all zero (EmptyAudio's waveform)."""
    frame = av.AudioFrame(
        format="flt", layout=AUDIO_CHANNELS[audio.channels], samples=max(1, audio.samples)
    )
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = audio.sample_rate
    frame.pts = 0
    return frame


def _save_audio(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    audio: Audio = inputs["audio"]
    folder, base, subfolder = output_folder(_output(ctx), str(inputs["filename_prefix"]))
    counter = next_counter(folder, base)
    saved = []
    for batch_number in range(audio.batch):
        name = f"{base.replace('%batch_num%', str(batch_number))}_{counter:05}_.flac"
        with av.open(str(folder / name), mode="w", format="flac") as container:
            stream = container.add_stream(
                "flac", rate=audio.sample_rate, layout=AUDIO_CHANNELS[audio.channels]
            )
            container.mux(stream.encode(_silence(audio)))
            container.mux(stream.encode(None))
        saved.append(_saved(name, subfolder))
        counter += 1
    return (), {"audio": saved}


def _primitive_string(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    return (str(inputs["value"]),), None


def _preview_any(ctx: RunContext, inputs: dict[str, Any]) -> Result:
    source = inputs.get("source")
    if isinstance(source, str):
        value = source
    elif isinstance(source, (int, float, bool)):
        value = str(source)
    elif source is None:
        value = "None"
    else:
        try:
            value = json.dumps(source, indent=4)
        except (TypeError, ValueError):
            value = str(source)
    return (), {"text": [value]}


def _output(ctx: RunContext) -> SaveTarget:
    return SaveTarget(ctx.data_dir / "output", "output")


def _images() -> InputSpec:
    return InputSpec("images", "IMAGE")


def _prefix(default: str = "ComfyUI") -> InputSpec:
    return InputSpec("filename_prefix", "STRING", {"default": default})


def _fps(default: float, low: float = 0.01, high: float = 1000.0, step: float = 0.01) -> InputSpec:
    return InputSpec("fps", "FLOAT", {"default": default, "min": low, "max": high, "step": step})


MEDIA_NODES: tuple[NodeSpec, ...] = (
    NodeSpec(
        "SaveAnimatedWEBP",
        "image/animation",
        (
            _images(),
            _prefix(),
            _fps(6.0),
            InputSpec("lossless", "BOOLEAN", {"default": True}),
            InputSpec("quality", "INT", _int(80, 0, 100)),
            InputSpec("method", "COMBO"),
        ),
        (),
        _save_animated_webp,
        output_node=True,
    ),
    NodeSpec(
        "SaveAnimatedPNG",
        "image/animation",
        (_images(), _prefix(), _fps(6.0), InputSpec("compress_level", "INT", _int(4, 0, 9))),
        (),
        _save_animated_png,
        output_node=True,
    ),
    NodeSpec(
        "SaveWEBM",
        "image/video",
        (
            _images(),
            _prefix(),
            InputSpec("codec", "COMBO"),
            _fps(24.0),
            InputSpec("crf", "FLOAT", {"default": 32.0, "min": 0, "max": 63.0, "step": 1}),
        ),
        (),
        _save_webm,
        output_node=True,
    ),
    NodeSpec(
        "CreateVideo",
        "image/video",
        (_images(), _fps(30.0, 1.0, 120.0, 1.0)),
        ("VIDEO",),
        _create_video,
        optional=(InputSpec("audio", "AUDIO"),),
    ),
    NodeSpec(
        "SaveVideo",
        "image/video",
        (
            InputSpec("video", "VIDEO"),
            _prefix("video/ComfyUI"),
            InputSpec("format", "COMBO", {"default": "auto"}),
            InputSpec("codec", "COMBO", {"default": "auto"}),
        ),
        (),
        _save_video,
        output_node=True,
    ),
    NodeSpec(
        "EmptyAudio",
        "audio",
        (
            InputSpec(
                "duration",
                "FLOAT",
                {"default": 60.0, "min": 0.0, "max": 0xFFFFFFFFFFFFFFFF, "step": 0.01},
            ),
            InputSpec("sample_rate", "INT", _int(44100, 1, 192000)),
            InputSpec("channels", "INT", _int(2, 1, 2)),
        ),
        ("AUDIO",),
        _empty_audio,
    ),
    NodeSpec(
        "SaveAudio",
        "audio",
        (InputSpec("audio", "AUDIO"), _prefix("audio/ComfyUI")),
        (),
        _save_audio,
        output_node=True,
    ),
    NodeSpec(
        "PrimitiveString",
        "utils/primitive",
        (InputSpec("value", "STRING"),),
        ("STRING",),
        _primitive_string,
    ),
    NodeSpec(
        "PreviewAny", "utils", (InputSpec("source", "*"),), (), _preview_any, output_node=True
    ),
)

MEDIA_COMBOS = {
    "SaveAnimatedWEBP.method": list(WEBP_METHODS),
    "SaveWEBM.codec": list(WEBM_CODECS),
    "SaveVideo.format": ["auto", "mp4"],
    "SaveVideo.codec": ["auto", "h264"],
}
