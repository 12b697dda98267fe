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
