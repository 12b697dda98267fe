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
