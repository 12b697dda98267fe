"""The conformance case table: each case runs through the local stack against the real runtime
AND the emulator, and both must give the outcome written here (what sdq promises, issue 13).

Sizes are 64-128 px and 1-2 steps so a CPU runs the real programs quickly; seeds are fixed
(SD WebUI's NaN check trips on some seeds with random weights). Slow cases (cancel, deadline,
crash) make the real runtime slow with many steps; the emulator draws in constant time, so
they arm its ``hang_next`` / latency knobs instead.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdq_conformance.files import FileFacts
from sdq_conformance.harness import Inputs
from sdq_runtime_emulator import workflows

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEED = 1234
MODEL = "tiny-sd15-random.safetensors"
SD15 = "v1-5-pruned-emaonly.safetensors"

Body = Callable[[Inputs], dict[str, Any]]


@dataclass(frozen=True)
class Expect:
    status: str
    code: str | None = None
    permanent: bool | None = None
    images: tuple[tuple[int, int], ...] = ()
    # Words the failure message must contain (the runtime's reason, the node id, ...).
    message: tuple[str, ...] = ()
    # Every output's kind, content type and pixels, in any order (None: PNG images of the
    # sizes in ``images``, what SD WebUI and SaveImage make).
    files: tuple[FileFacts, ...] | None = None
    # The contents of the text outputs.
    texts: tuple[str, ...] = ()

    def expected_files(self) -> tuple[FileFacts, ...]:
        if self.files is not None:
            return self.files
        return tuple(FileFacts("image", "image/png", w, h) for w, h in self.images)


@dataclass(frozen=True)
class Case:
    id: str
    runtime: str
    body: Body
    expect: Expect
    api: str = "/v1alpha2"
    action: Literal["cancel", "crash"] | None = None
    # Emulator knobs armed before the task (it has no slow path of its own).
    emulator_knobs: dict[str, Any] = field(default_factory=dict)
    within_s: float = 240.0
    # Which issue-13 item the case covers, for the report.
    note: str = ""
    # A second task submitted right behind the first, on the same runtime, and its outcome:
    # the agent sends its request while the first generates (runtime look-ahead).
    behind: Body | None = None
    behind_expect: Expect | None = None


# --- SD WebUI bodies -------------------------------------------------------------------------


def v2(runtime: str, tasktype: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {
            "metadata": {
                "id": "",
                "runtime": runtime,
                "tasktype": tasktype,
                "prefix": "output",
                "context": "",
            },
            "content": content,
        }
    }


def gen(**extra: Any) -> dict[str, Any]:
    return {"prompt": "a lighthouse", "steps": 1, "width": 64, "height": 64, "seed": SEED} | extra


def t2i(runtime: str, **extra: Any) -> Body:
    return lambda _: v2(runtime, "text-to-image", gen(**extra))


def i2i(runtime: str, image: Callable[[Inputs], str], **extra: Any) -> Body:
    return lambda i: v2(
        runtime,
        "image-to-image",
        gen(init_images=[image(i)], denoising_strength=0.5, steps=2) | extra,
    )


def with_model(model: str) -> dict[str, Any]:
    return {"override_settings": {"sd_model_checkpoint": model}}


def v1alpha1(task: str, model: str, **extra: Any) -> Body:
    def body(i: Inputs) -> dict[str, Any]:
        scripts = {"task": task, "sd_model_checkpoint": model, "id_task": "", "uid": ""}
        if task == "image-to-image":
            scripts["image_link"] = i.s3_uri
            return {"alwayson_scripts": scripts, **gen(denoising_strength=0.5, steps=2), **extra}
        return {"alwayson_scripts": scripts, **gen(**extra)}

    return body


def extra_single(upscaler: str = "Lanczos") -> Body:
    return lambda i: v2(
        "sdruntime",
        "extra-single-image",
        {"resize_mode": 0, "upscaling_resize": 2, "upscaler_1": upscaler, "image": i.b64},
    )


def extra_batch(named: bool) -> Body:
    def body(i: Inputs) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"data": i.b64}, {"data": i.data_uri}]
        if named:
            for n, item in enumerate(items):
                item["name"] = f"in-{n}.png"
        return v2(
            "sdruntime",
            "extra-batch-images",
            {"resize_mode": 0, "upscaling_resize": 2, "upscaler_1": "Nearest", "imageList": items},
        )

    return body


# --- ComfyUI graphs ----------------------------------------------------------------------------


def comfy_graph(
    *,
    image: Callable[[Inputs], str] | None = None,
    size: int = 64,
    steps: int = 1,
    ckpt: str = MODEL,
    sampler: str = "euler",
) -> Callable[[Inputs], dict[str, Any]]:
    """txt2img (EmptyLatentImage) or img2img (LoadImage → VAEEncode) API-format graph."""

    def graph(i: Inputs) -> dict[str, Any]:
        nodes: dict[str, Any] = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "2": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": "a lighthouse", "clip": ["1", 1]},
            },
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
            "5": {
                "class_type": "KSampler",
                "inputs": {
                    "model": ["1", 0],
                    "positive": ["2", 0],
                    "negative": ["3", 0],
                    "latent_image": ["4", 0],
                    "seed": SEED,
                    "steps": steps,
                    "cfg": 7.0,
                    "sampler_name": sampler,
                    "scheduler": "normal",
                    "denoise": 1.0 if image is None else 0.6,
                },
            },
            "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
            "7": {
                "class_type": "SaveImage",
                "inputs": {"images": ["6", 0], "filename_prefix": "conf"},
            },
        }
        if image is None:
            nodes["4"] = {
                "class_type": "EmptyLatentImage",
                "inputs": {"width": size, "height": size, "batch_size": 1},
            }
        else:
            nodes["8"] = {"class_type": "LoadImage", "inputs": {"image": image(i)}}
            nodes["4"] = {
                "class_type": "VAEEncode",
                "inputs": {"pixels": ["8", 0], "vae": ["1", 2]},
            }
        return nodes

    return graph


def pipeline(graph: Callable[[Inputs], dict[str, Any]]) -> Body:
    return lambda i: v2("comfyui", "pipeline", graph(i))


def stored_as(body: Body, fmt: str, quality: int) -> Body:
    """The same task asking for its still images as ``fmt`` (``task.metadata.output``)."""

    def with_output(i: Inputs) -> dict[str, Any]:
        data = body(i)
        data["task"]["metadata"]["output"] = {"format": fmt, "quality": quality}
        return data

    return with_output


def animated_png(_: Inputs) -> dict[str, Any]:
    """Two weight-free frames saved as an APNG."""
    return workflows.frames(frame_count=2) | {
        "3": {
            "class_type": "SaveAnimatedPNG",
            "inputs": {
                "images": [workflows.frames_node(2), 0],
                "filename_prefix": "conf",
                "fps": 4.0,
                "compress_level": 4,
            },
        }
    }


def unknown_node(i: Inputs) -> dict[str, Any]:
    nodes = comfy_graph()(i)
    nodes["9"] = {"class_type": "NoSuchNode", "inputs": {"image": ["6", 0]}}
    return nodes


def one_invalid_output(i: Inputs) -> dict[str, Any]:
    """Two outputs: node 7 is valid, node 12's latent has an invalid width (below 16)."""
    nodes = comfy_graph()(i)
    nodes["10"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 4, "height": 64, "batch_size": 1},
    }
    nodes["11"] = {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}}
    nodes["12"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["11", 0], "filename_prefix": "conf"},
    }
    return nodes


# --- tests/examples, as shipped ------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def small(content: dict[str, Any]) -> None:
    """The one change the suite makes to an example: CPU-sized work (64 px, 1-2 steps)."""
    for key, value in (("width", 64), ("height", 64), ("steps", 2)):
        if key in content:
            content[key] = value
    content.setdefault("seed", SEED)


def small_graph(graph: dict[str, Any]) -> dict[str, Any]:
    graph = copy.deepcopy(graph)
    for node in graph.values():
        inputs = node.get("inputs", {})
        if node.get("class_type") == "EmptyLatentImage":
            inputs.update(width=64, height=64)
        if node.get("class_type") == "KSampler":
            inputs.update(steps=2)
    return graph


def example_v2(name: str) -> Body:
    def body(_: Inputs) -> dict[str, Any]:
        data = example(name)
        if data["task"]["metadata"]["tasktype"] == "pipeline":
            data["task"]["content"] = small_graph(data["task"]["content"])
        else:
            small(data["task"]["content"])
        return data

    return body


def example_v1(name: str) -> Body:
    def body(i: Inputs) -> dict[str, Any]:
        data = example(name)
        small(data)
        if "image_link" in data["alwayson_scripts"]:
            # example.com is out of reach here: the same picture from the suite's own server.
            data["alwayson_scripts"]["image_link"] = i.http_url
        return data

    return body


def example_workflow(name: str) -> Body:
    """A ComfyUI API-format workflow file as `sdq submit --workflow` sends it (LoadImage
    nodes get the picture given with --image, as a data: URI)."""

    def body(i: Inputs) -> dict[str, Any]:
        graph = small_graph(example(name))
        for node in graph.values():
            if node.get("class_type") == "LoadImage":
                node["inputs"]["image"] = i.data_uri
        return v2("comfyui", "pipeline", graph)

    return body


# --- the table -----------------------------------------------------------------------------------

DONE_64 = Expect("completed", images=((64, 64),))
PNG_64 = FileFacts("image", "image/png", 64, 64)
WEBP_ANIMATION_64 = FileFacts("animation", "image/webp", 64, 64)
# Three 64 px frames saved as an animated WebP and as three PNG images (ComfyUI on CPU, no model).
ANIMATION_AND_IMAGES = pipeline(
    lambda _: workflows.animation_and_image(frame_count=3, filename_prefix="conf")
)
CAPTION = "sdq conformance: a caption"
REJECTED = Expect("failed", "runtime_rejected", True)
CORRUPT_PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"no image chunks follow").decode()

# One case per entry; the table is formatted by ruff like any other code.
CASES: tuple[Case, ...] = (
    # SD WebUI task types, static model.
    Case("sd-t2i-static", "sdruntime", t2i("sdruntime"), DONE_64),
    Case(
        "sd-t2i-batch2",
        "sdruntime",
        t2i("sdruntime", batch_size=2),
        Expect("completed", images=((64, 64),) * 2),
    ),
    Case(
        "sd-t2i-size-rounded",
        "sdruntime",
        t2i("sdruntime", width=100, height=68),
        Expect("completed", images=((96, 64),)),
        note="width/height rounded down to multiples of 8",
    ),
    Case("sd-i2i-base64", "sdruntime", i2i("sdruntime", lambda i: i.b64), DONE_64),
    Case("sd-i2i-data-uri", "sdruntime", i2i("sdruntime", lambda i: i.data_uri), DONE_64),
    Case("sd-i2i-s3", "sdruntime", i2i("sdruntime", lambda i: i.s3_uri), DONE_64),
    Case("sd-i2i-http", "sdruntime", i2i("sdruntime", lambda i: i.http_url), DONE_64),
    Case(
        "sd-i2i-invalid-image",
        "sdruntime",
        # A PNG signature then garbage: past the API's image sniff (which refuses what is not an
        # image at all with a 400), undecodable for the runtime.
        i2i("sdruntime", lambda _: CORRUPT_PNG_B64),
        REJECTED,
        note="#1 500 'Invalid encoded image' is the request's fault",
    ),
    Case("sd-extra-single", "sdruntime", extra_single(), Expect("completed", images=((128, 128),))),
    Case(
        "sd-extra-single-unknown-upscaler",
        "sdruntime",
        extra_single("NoSuchUpscaler"),
        Expect("failed", "runtime_rejected", True, message=("NoSuchUpscaler",)),
        note="#1 500 'could not find upscaler'",
    ),
    Case(
        "sd-extra-batch",
        "sdruntime",
        extra_batch(named=True),
        Expect("completed", images=((128, 128),) * 2),
    ),
    Case(
        "sd-extra-batch-unnamed",
        "sdruntime",
        extra_batch(named=False),
        Expect("completed", images=((128, 128),) * 2),
        note="#3 items without name",
    ),
    Case(
        "sd-unknown-script",
        "sdruntime",
        t2i("sdruntime", alwayson_scripts={"controlnet": {"args": []}}),
        Expect("failed", "unknown_script", True, message=("controlnet",)),
        note="#3 unknown alwayson_scripts entry",
    ),
    # Dynamic models.
    Case("sd-dynamic-model", "sddynamic", t2i("sddynamic", **with_model(MODEL)), DONE_64),
    Case(
        "sd-dynamic-guide-form",
        "sddynamic",
        t2i("sddynamic", alwayson_scripts={"sd_model_checkpoint": MODEL}),
        DONE_64,
        note="#2 alwayson_scripts.sd_model_checkpoint",
    ),
    Case(
        "sd-dynamic-unknown-model",
        "sddynamic",
        t2i("sddynamic", **with_model("no-such-model.safetensors")),
        Expect("failed", "unknown_model", True, message=("no-such-model",)),
    ),
    # v1alpha1 bodies (routed by model: the static runtime, else the dynamic one).
    Case("v1-t2i-static", "sdruntime", v1alpha1("text-to-image", SD15), DONE_64, api="/v1alpha1"),
    Case(
        "v1-t2i-dynamic",
        "sddynamic",
        v1alpha1("text-to-image", MODEL),
        DONE_64,
        api="/v1alpha1",
        note="v1alpha1's alwayson_scripts.sd_model_checkpoint on a dynamic runtime",
    ),
    Case(
        "v1-i2i-image-link", "sdruntime", v1alpha1("image-to-image", SD15), DONE_64, api="/v1alpha1"
    ),
    Case(
        "v1-unknown-model",
        "sddynamic",
        v1alpha1("text-to-image", "no-such-model.safetensors"),
        Expect("failed", "unknown_model", True),
        api="/v1alpha1",
    ),
    # Cancel, deadline, crash.
    Case(
        "sd-cancel",
        "sddynamic",
        t2i("sddynamic", width=128, height=128, steps=150),
        Expect("cancelled"),
        action="cancel",
        emulator_knobs={"hang_next": 1},
    ),
    Case(
        "sd-cancel-with-one-queued",
        "sddynamic",
        t2i("sddynamic", width=128, height=128, steps=150),
        Expect("cancelled"),
        action="cancel",
        emulator_knobs={"hang_next": 1},
        behind=t2i("sddynamic", width=64, height=64, steps=2),
        behind_expect=Expect("completed", images=((64, 64),)),
        note="SD WebUI's interrupt is global: the task queued behind still gets a whole image",
    ),
    Case(
        "sd-deadline",
        "sddeadline",
        t2i("sddeadline", width=128, height=128, steps=150),
        Expect("failed", "deadline_exceeded", True),
        emulator_knobs={"hang_next": 1},
    ),
    Case(
        "sd-crash-restart",
        "sddynamic",
        t2i("sddynamic", width=128, height=128, steps=6),
        Expect("completed", images=((128, 128),)),
        action="crash",
        emulator_knobs={"generation_latency_s": 60},
        within_s=600,
    ),
    # ComfyUI.
    Case("comfy-t2i", "comfyui", pipeline(comfy_graph()), DONE_64),
    Case(
        "comfy-i2i-data-uri", "comfyui", pipeline(comfy_graph(image=lambda i: i.data_uri)), DONE_64
    ),
    Case(
        "comfy-i2i-base64",
        "comfyui",
        pipeline(comfy_graph(image=lambda i: i.b64)),
        DONE_64,
        note="#4 plain base64 in LoadImage",
    ),
    Case("comfy-i2i-s3", "comfyui", pipeline(comfy_graph(image=lambda i: i.s3_uri)), DONE_64),
    Case("comfy-i2i-http", "comfyui", pipeline(comfy_graph(image=lambda i: i.http_url)), DONE_64),
    Case(
        "comfy-unknown-node",
        "comfyui",
        pipeline(unknown_node),
        Expect("failed", "runtime_rejected", True, message=("NoSuchNode", "#9")),
        note="#6 node id kept",
    ),
    Case(
        "comfy-invalid-input",
        "comfyui",
        pipeline(comfy_graph(sampler="no_such_sampler")),
        Expect("failed", "runtime_rejected", True, message=("no_such_sampler",)),
    ),
    Case(
        "comfy-one-output-invalid",
        "comfyui",
        pipeline(one_invalid_output),
        Expect("failed", "runtime_rejected", True, message=("10",)),
        note="#5 partial node_errors",
    ),
    Case(
        "comfy-cancel",
        "comfyui",
        pipeline(comfy_graph(size=128, steps=150)),
        Expect("cancelled"),
        action="cancel",
        emulator_knobs={"hang_next": 1},
    ),
    # Every output kind the real ComfyUI v0.8.0 makes on CPU without weights (issue 17). Audio
    # is not here: the CPU build's torchaudio does not load, so its audio nodes do not exist.
    Case(
        "comfy-animation-and-image",
        "comfyui",
        ANIMATION_AND_IMAGES,
        Expect("completed", images=((64, 64),) * 3, files=(WEBP_ANIMATION_64, *(PNG_64,) * 3)),
        note="issue 17: SaveAnimatedWEBP beside SaveImage",
    ),
    Case(
        "comfy-animated-png",
        "comfyui",
        pipeline(animated_png),
        Expect("completed", files=(FileFacts("animation", "image/png", 64, 64),)),
    ),
    Case(
        "comfy-video-mp4-webm",
        "comfyui",
        pipeline(lambda _: workflows.video(frame_count=4, filename_prefix="conf")),
        Expect(
            "completed",
            files=(
                FileFacts("video", "video/mp4", 64, 64),
                FileFacts("video", "video/webm", 64, 64),
            ),
        ),
        note="CreateVideo → SaveVideo (H.264) and SaveWEBM (VP9)",
    ),
    Case(
        "comfy-text",
        "comfyui",
        pipeline(lambda _: workflows.text(CAPTION)),
        Expect("completed", files=(FileFacts("text", "text/plain"),), texts=(CAPTION,)),
        note="PreviewAny's text, stored as a .txt object",
    ),
    Case(
        "comfy-format-jpeg",
        "comfyui",
        stored_as(ANIMATION_AND_IMAGES, "jpeg", 85),
        Expect(
            "completed",
            images=((64, 64),) * 3,
            files=(WEBP_ANIMATION_64, *(FileFacts("image", "image/jpeg", 64, 64),) * 3),
        ),
        note="still images converted, the animation kept as made",
    ),
    Case(
        "sd-format-webp",
        "sdruntime",
        stored_as(t2i("sdruntime"), "webp", 80),
        Expect("completed", images=((64, 64),), files=(FileFacts("image", "image/webp", 64, 64),)),
    ),
    # tests/examples/, as shipped (CPU-sized).
    Case(
        "example-v1alpha1-t2i",
        "sdruntime",
        example_v1("v1alpha1-text-to-image.json"),
        DONE_64,
        api="/v1alpha1",
    ),
    Case(
        "example-v1alpha1-i2i",
        "sdruntime",
        example_v1("v1alpha1-image-to-image.json"),
        DONE_64,
        api="/v1alpha1",
    ),
    Case("example-v1alpha2-t2i", "sdruntime", example_v2("v1alpha2-text-to-image.json"), DONE_64),
    Case("example-v1alpha2-i2i", "sdruntime", example_v2("v1alpha2-image-to-image.json"), DONE_64),
    Case(
        "example-v1alpha2-extra-single",
        "sdruntime",
        example_v2("v1alpha2-extra-single-image.json"),
        Expect("completed", images=((256, 256),)),
    ),
    Case(
        "example-v1alpha2-extra-batch",
        "sdruntime",
        example_v2("v1alpha2-extra-batch-images.json"),
        Expect("completed", images=((128, 128),) * 2),
    ),
    Case("example-v1alpha2-pipeline", "comfyui", example_v2("v1alpha2-pipeline.json"), DONE_64),
    Case(
        "example-comfyui-txt2img", "comfyui", example_workflow("comfyui-txt2img-api.json"), DONE_64
    ),
    Case("example-comfyui-invert", "comfyui", example_workflow("comfyui-invert-api.json"), DONE_64),
    Case(
        "example-comfyui-animation",
        "comfyui",
        example_workflow("comfyui-animation-api.json"),
        Expect(
            "completed",
            images=((128, 128),) * 4,
            files=(
                FileFacts("animation", "image/webp", 128, 128),
                *(FileFacts("image", "image/png", 128, 128),) * 4,
            ),
        ),
    ),
)
