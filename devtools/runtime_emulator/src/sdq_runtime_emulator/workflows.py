"""Ready-made ComfyUI API-format workflows for tests against the sdq runtime EMULATOR.

They are standard graphs that also run on a real ComfyUI (given the checkpoint / input file).
"""

from __future__ import annotations

from typing import Any


def txt2img(
    prompt: str,
    *,
    seed: int = 1,
    width: int = 512,
    height: int = 512,
    batch_size: int = 1,
    steps: int = 20,
    filename_prefix: str = "ComfyUI",
    ckpt_name: str = "v1-5-pruned-emaonly.safetensors",
) -> dict[str, Any]:
    """The default ComfyUI txt2img graph: checkpoint, two prompts, KSampler, decode, save."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch_size},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"images": ["8", 0], "filename_prefix": filename_prefix},
        },
    }


def load_invert_save(image: str, *, filename_prefix: str = "ComfyUI") -> dict[str, Any]:
    """Weight-free: load an uploaded input image, invert it, save it."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": filename_prefix},
        },
    }


def img2img(
    prompt: str,
    image: str,
    *,
    seed: int = 1,
    steps: int = 20,
    denoise: float = 0.6,
    filename_prefix: str = "ComfyUI",
    ckpt_name: str = "v1-5-pruned-emaonly.safetensors",
) -> dict[str, Any]:
    """The standard img2img graph: LoadImage → VAEEncode → KSampler → VAEDecode → SaveImage."""
    graph = txt2img(
        prompt, seed=seed, steps=steps, filename_prefix=filename_prefix, ckpt_name=ckpt_name
    )
    del graph["5"]
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["3"]["inputs"] |= {"latent_image": ["11", 0], "denoise": denoise}
    return graph


def hires_upscale(
    prompt: str,
    *,
    seed: int = 1,
    width: int = 256,
    height: int = 256,
    scale_by: float = 2.0,
    filename_prefix: str = "ComfyUI",
    ckpt_name: str = "v1-5-pruned-emaonly.safetensors",
) -> dict[str, Any]:
    """txt2img, then a weight-free pixel upscale (ImageScaleBy) saved beside the original."""
    graph = txt2img(
        prompt,
        seed=seed,
        width=width,
        height=height,
        steps=4,
        filename_prefix=filename_prefix,
        ckpt_name=ckpt_name,
    )
    graph["12"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["8", 0], "upscale_method": "lanczos", "scale_by": scale_by},
    }
    graph["13"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["12", 0], "filename_prefix": f"{filename_prefix}-upscaled"},
    }
    return graph


FRAMES_A, FRAMES_B = 0x3366CC, 0xCC9933


def frames(*, width: int = 64, height: int = 64, frame_count: int = 4) -> dict[str, Any]:
    """Weight-free frames in colours alternating A, B, A, ... (so no two following frames are
    equal: animation encoders merge equal frames): two ``EmptyImage`` nodes ("1", "2") joined
    by a chain of ``ImageBatch`` nodes. The batch is the output 0 of :func:`frames_node`."""
    graph: dict[str, Any] = {
        str(node): {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": 1, "color": colour},
        }
        for node, colour in ((1, FRAMES_A), (2, FRAMES_B))
    }
    for index in range(1, frame_count):
        graph[str(10 + index)] = {
            "class_type": "ImageBatch",
            "inputs": {"image1": [frames_node(index), 0], "image2": ["2" if index % 2 else "1", 0]},
        }
    return graph


def frames_node(frame_count: int) -> str:
    """The id of the node whose output holds the ``frame_count`` frames of :func:`frames`."""
    return "1" if frame_count <= 1 else str(10 + frame_count - 1)


def animation_and_image(
    *, width: int = 64, height: int = 64, frame_count: int = 4, filename_prefix: str = "ComfyUI"
) -> dict[str, Any]:
    """Weight-free frames saved as an animated WebP (node "3") and as PNG images (node "4").
    Runs on a real ComfyUI v0.8.0 on CPU without any model."""
    source = [frames_node(frame_count), 0]
    return frames(width=width, height=height, frame_count=frame_count) | {
        "3": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": source,
                "filename_prefix": f"{filename_prefix}_anim",
                "fps": 6.0,
                "lossless": False,
                "quality": 80,
                "method": "default",
            },
        },
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": source, "filename_prefix": filename_prefix},
        },
    }


def video(
    *, width: int = 64, height: int = 64, frame_count: int = 4, filename_prefix: str = "ComfyUI"
) -> dict[str, Any]:
    """Weight-free frames made into an H.264 MP4 (``CreateVideo`` "3" → ``SaveVideo`` "4")
    and a VP9 WebM (``SaveWEBM``, node "5")."""
    source = [frames_node(frame_count), 0]
    return frames(width=width, height=height, frame_count=frame_count) | {
        "3": {"class_type": "CreateVideo", "inputs": {"images": source, "fps": 8.0}},
        "4": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["3", 0],
                "filename_prefix": f"{filename_prefix}_video",
                "format": "auto",
                "codec": "auto",
            },
        },
        "5": {
            "class_type": "SaveWEBM",
            "inputs": {
                "images": source,
                "filename_prefix": f"{filename_prefix}_webm",
                "codec": "vp9",
                "fps": 8.0,
                "crf": 32.0,
            },
        },
    }


def text(value: str) -> dict[str, Any]:
    """A text output: ``PrimitiveString`` → ``PreviewAny`` (history ``{"text": [value]}``)."""
    return {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": value}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def audio(
    *, duration: float = 0.5, sample_rate: int = 8000, filename_prefix: str = "ComfyUI"
) -> dict[str, Any]:
    """Silent audio saved as FLAC (``EmptyAudio`` → ``SaveAudio``). A real ComfyUI needs
    torchaudio for these nodes (the CPU build the suite uses has none)."""
    return {
        "1": {
            "class_type": "EmptyAudio",
            "inputs": {"duration": duration, "sample_rate": sample_rate, "channels": 1},
        },
        "2": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["1", 0], "filename_prefix": f"{filename_prefix}_audio"},
        },
    }
