"""Emulated SD WebUI (AUTOMATIC1111 v1.10) API under /sdapi/v1 — sdq runtime EMULATOR.

Generations return placeholder PNGs. One generation runs at a time (a queue lock, as in the
real server); ``refresh-checkpoints`` and checkpoint switches take the same lock.
Checkpoint semantics follow the real server: ``override_settings.sd_model_checkpoint`` loads
that model for the request (unknown names are ignored), the options value is restored
afterwards but the overriding model stays loaded until a later request needs another one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from sdq_runtime_emulator import models, render
from sdq_runtime_emulator.knobs import MAX_IMAGE_SIDE
from sdq_runtime_emulator.sdwebui_requests import (
    EXTRAS_BATCH,
    EXTRAS_SINGLE,
    IMG2IMG,
    TXT2IMG,
    RequestInvalid,
    Spec,
    parse_body,
)
from sdq_runtime_emulator.state import EmulatorState, GenerationFault, Outcome, log, pace

PREFIX = "/sdapi/v1"
GENERATION_PATHS = frozenset(
    f"{PREFIX}/{name}"
    for name in ("txt2img", "img2img", "extra-single-image", "extra-batch-images")
)
UPSCALERS = {
    "None": Image.Resampling.LANCZOS,
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
    "ESRGAN_4x": Image.Resampling.LANCZOS,
    "R-ESRGAN 4x+": Image.Resampling.LANCZOS,
    "SwinIR 4x": Image.Resampling.LANCZOS,
}
MAX_IMAGES = 64
VERSION = "v1.10.1"
# v1.10.1's samplers in its order; the first is the default an unknown name falls back to.
SAMPLERS = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 2S a",
    "DPM++ 3M SDE",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM fast",
    "DPM adaptive",
    "Restart",
    "DDIM",
    "DDIM CFG++",
    "PLMS",
    "UniPC",
    "LCM",
)
# Scripts of a stock v1.10.1 in API-only mode, as its GET /sdapi/v1/scripts lists them (titles
# lower-cased except Hypertile's); the always-on ones may be named in ``alwayson_scripts``, the
# selectable ones only in ``script_name``.
SELECTABLE_SCRIPTS = {
    "txt2img": ("prompt matrix", "prompts from file or textbox", "x/y/z plot"),
    "img2img": (
        "img2img alternative test",
        "loopback",
        "outpainting mk2",
        "poor man's outpainting",
        "prompt matrix",
        "prompts from file or textbox",
        "sd upscale",
        "x/y/z plot",
    ),
}
ALWAYSON_SCRIPTS = {
    "txt2img": ("extra options", "Hypertile", "refiner", "sampler", "seed"),
    "img2img": ("extra options", "Hypertile", "soft inpainting", "refiner", "sampler", "seed"),
}


class SdError(Exception):
    """Answered with SD WebUI's error body ``{"error", "detail", "body", "errors"}``."""

    def __init__(self, status: int, error: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.detail = status, error, message, detail

    @classmethod
    def http(cls, status: int, detail: str) -> SdError:
        # v1.10.1's stack renders an HTTPException as "" in ``errors``; ``detail`` has the text.
        return cls(status, "HTTPException", "", detail)

    def response(self) -> web.Response:
        return sd_error_response(self.status, self.error, self.message, self.detail)


def sd_error_response(status: int, error: str, message: str, detail: str = "") -> web.Response:
    body = {"error": error, "detail": detail, "body": "", "errors": message}
    return web.json_response(body, status=status)


@dataclass
class Job:
    name: str
    steps: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    step: int = 0
    started: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))


@dataclass(frozen=True)
class Generated:
    pictures: list[render.Picture]
    interrupted: bool
    model: models.Checkpoint


class SdWebUi:
    """Handlers of the SD WebUI routes; one instance per emulator app."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.lock = asyncio.Lock()
        self.checkpoints = models.scan(state.knobs.models_dir)
        initial = state.knobs.initial_model
        chosen = models.find(self.checkpoints, initial) if initial else self.checkpoints[0]
        if chosen is None:
            raise ValueError(f"initial_model: unknown checkpoint {initial!r}")
        self.loaded: models.Checkpoint | None = chosen
        self.options: dict[str, Any] = {
            "sd_model_checkpoint": chosen.title,
            "sd_checkpoint_hash": chosen.sha256,
            "samples_format": "png",
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "emulator": render.BANNER,
        }
        self.job: Job | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(f"{PREFIX}/txt2img", self.txt2img),
            web.post(f"{PREFIX}/img2img", self.img2img),
            web.post(f"{PREFIX}/extra-single-image", self.extra_single),
            web.post(f"{PREFIX}/extra-batch-images", self.extra_batch),
            web.get(f"{PREFIX}/sd-models", self.sd_models),
            web.post(f"{PREFIX}/refresh-checkpoints", self.refresh_checkpoints),
            web.get(f"{PREFIX}/options", self.get_options),
            web.post(f"{PREFIX}/options", self.set_options),
            web.post(f"{PREFIX}/unload-checkpoint", self.unload_checkpoint),
            web.get(f"{PREFIX}/progress", self.progress),
            web.post(f"{PREFIX}/interrupt", self.interrupt),
            web.get(f"{PREFIX}/memory", self.memory),
            web.get(f"{PREFIX}/samplers", self.samplers),
            web.get(f"{PREFIX}/upscalers", self.upscalers),
            web.get(f"{PREFIX}/scripts", self.scripts),
            # No /internal/ping: it exists only with the web UI; sdq runs --api --nowebui.
        ]

    # --- generation -------------------------------------------------------------------

    async def txt2img(self, request: web.Request) -> web.Response:
        return await self._images(request, TXT2IMG, "txt2img")

    async def img2img(self, request: web.Request) -> web.Response:
        return await self._images(request, IMG2IMG, "img2img")

    async def _images(self, request: web.Request, spec: Spec, job_name: str) -> web.Response:
        knobs = self.state.knobs
        defaults = {"width": knobs.default_width, "height": knobs.default_height}
        try:
            params = parse_body(await request.read(), spec, defaults)
            init = self._init_image(params) if job_name == "img2img" else None
            self._check_scripts(params, job_name)
            # SD WebUI silently uses its default sampler for a name it does not know, and
            # rounds the size down to multiples of 8.
            sampler = params["sampler_name"] or params["sampler_index"]
            params["sampler_name"] = sampler if sampler in SAMPLERS else SAMPLERS[0]
            params["width"] = params["width"] // 8 * 8
            params["height"] = params["height"] // 8 * 8
            width, height = params["width"], params["height"]
            total = params["batch_size"] * params["n_iter"]
            if not (8 <= width <= MAX_IMAGE_SIDE and 8 <= height <= MAX_IMAGE_SIDE):
                raise SdError(500, "ValueError", f"image size {width}x{height} out of range")
            if not 1 <= total <= MAX_IMAGES:
                raise SdError(500, "ValueError", f"batch_size x n_iter must be 1..{MAX_IMAGES}")
            seed = params["seed"] if params["seed"] >= 0 else secrets.randbelow(2**32)
            seeds = [seed + index for index in range(total)]

            def draw() -> list[render.Picture]:
                return [self._placeholder(params, one, init) for one in seeds]

            generated = await self._generate(
                request,
                job_name,
                draw,
                steps=params["steps"],
                override=params["override_settings"],
                restore_afterwards=params["override_settings_restore_afterwards"],
            )
        except RequestInvalid as invalid:
            return web.json_response({"detail": invalid.detail}, status=422)
        except SdError as error:
            return error.response()
        pictures = self._partial(generated, params["batch_size"])
        info = self._info(params, seeds[: len(pictures)], generated.model)
        if job_name == "img2img" and not params["include_init_images"]:
            params = params | {"init_images": None, "mask": None}
        return web.json_response(
            {
                "images": [one.b64() for one in pictures],
                "parameters": params,
                "info": json.dumps(info),
            }
        )

    @staticmethod
    def _check_scripts(params: dict[str, Any], tab: str) -> None:
        for name in params["alwayson_scripts"]:
            lowered = str(name).lower()
            if lowered in SELECTABLE_SCRIPTS[tab]:
                raise SdError.http(
                    422, "Cannot have a selectable script in the always on scripts params"
                )
            if lowered not in {known.lower() for known in ALWAYSON_SCRIPTS[tab]}:
                raise SdError.http(422, f"Script '{name}' not found")

    def _init_image(self, params: dict[str, Any]) -> Image.Image:
        if params["init_images"] is None:
            raise SdError.http(404, "Init image not found")
        images = [self._decode(one) for one in params["init_images"]]
        if params["mask"] is not None:
            self._decode(params["mask"])
        if not images:
            raise SdError(500, "IndexError", "list index out of range")
        return images[0]

    @staticmethod
    def _decode(data: Any) -> Image.Image:
        try:
            return render.decode_b64_image(str(data))
        except render.BadImageError as error:
            raise SdError.http(500, "Invalid encoded image") from error

    def _placeholder(
        self, params: dict[str, Any], seed: int, init: Image.Image | None
    ) -> render.Picture:
        caption = render.Caption(params["prompt"], seed, self.state.next_serial())
        return render.placeholder(params["width"], params["height"], caption, under=init)

    @staticmethod
    def _partial(generated: Generated, batch_size: int) -> list[render.Picture]:
        """An interrupted job answers with its first batch only (a partial result)."""
        if not generated.interrupted:
            return generated.pictures
        return generated.pictures[:batch_size]

    def _info(self, params: dict[str, Any], seeds: list[int], model: models.Checkpoint) -> Any:
        prompt, negative = params["prompt"], params["negative_prompt"]
        infotexts = [
            f"{prompt}\nNegative prompt: {negative}\nSteps: {params['steps']}, "
            f"Sampler: {params['sampler_name']}, CFG scale: {params['cfg_scale']}, "
            f"Seed: {seed}, Size: {params['width']}x{params['height']}, "
            f"Model hash: {model.short_hash}, Model: {model.model_name}, "
            f"Version: {VERSION}, Emulator: {render.BANNER}"
            for seed in seeds
        ]
        return {
            "prompt": prompt,
            "all_prompts": [prompt] * len(seeds),
            "negative_prompt": negative,
            "all_negative_prompts": [negative] * len(seeds),
            "seed": seeds[0],
            "all_seeds": seeds,
            "subseed": params["subseed"],
            "all_subseeds": [params["subseed"]] * len(seeds),
            "width": params["width"],
            "height": params["height"],
            "sampler_name": params["sampler_name"],
            "cfg_scale": params["cfg_scale"],
            "steps": params["steps"],
            "batch_size": params["batch_size"],
            "denoising_strength": params["denoising_strength"],
            "sd_model_name": model.model_name,
            "sd_model_hash": model.short_hash,
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": params["styles"],
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "version": VERSION,
        }

    async def _generate(
        self,
        request: web.Request,
        job_name: str,
        draw: Callable[[], list[render.Picture]],
        *,
        steps: int,
        override: dict[str, Any],
        restore_afterwards: bool,
    ) -> Generated:
        """Run one generation under the queue lock, for exactly the configured latency."""
        async with self.lock:
            model = await self._ensure_model(override, restore_afterwards)
            state = self.state
            fault = state.take_generation_fault()
            deadline = time.monotonic() + state.knobs.generation_latency_s
            job = self.job = Job(job_name, steps)
            state.generation_started("sdwebui")
            log.info("sdwebui %s started (fault=%s)", job_name, fault.value)
            outcome = "failed"
            try:
                pictures = await asyncio.to_thread(draw)
                if fault is GenerationFault.EXECUTION_ERROR:
                    deadline = (time.monotonic() + deadline) / 2
                    await pace(
                        deadline=deadline, stop=job.stop, fault=GenerationFault.NONE, steps=1
                    )
                    raise SdError(
                        500,
                        "OutOfMemoryError",
                        "CUDA out of memory. (sdq runtime emulator: injected execution error)",
                    )

                async def advance(step: int) -> None:
                    job.step = step

                ended = await pace(
                    deadline=deadline,
                    stop=job.stop,
                    fault=fault,
                    steps=steps,
                    on_step=advance,
                    client_gone=lambda: request.transport is None,
                    die=lambda: state.die(lambda: _drop(request)),
                )
                if ended is Outcome.DIED:
                    raise SdError(500, "ConnectionDropped", "emulated process death")
                outcome = "completed" if ended is Outcome.FINISHED else "interrupted"
                return Generated(pictures, ended is Outcome.INTERRUPTED, model)
            finally:
                self.job = None
                state.generation_ended("sdwebui", outcome)
                log.info("sdwebui %s %s", job_name, outcome)

    async def _ensure_model(
        self, override: dict[str, Any], restore_afterwards: bool
    ) -> models.Checkpoint:
        wanted = override.get("sd_model_checkpoint")
        target = models.find(self.checkpoints, str(wanted)) if wanted else None
        if target is None:
            target = models.find(self.checkpoints, self.options["sd_model_checkpoint"])
        if target is None:
            raise SdError(500, "RuntimeError", "no checkpoint selected")
        await self._load(target)
        if not restore_afterwards:
            self.options.update(override)
            self.options["sd_model_checkpoint"] = target.title
        return target

    async def _load(self, target: models.Checkpoint) -> None:
        if self.loaded == target:
            return
        log.info("loading checkpoint %s", target.title)
        await asyncio.sleep(self.state.knobs.model_switch_latency_s)
        self.loaded = target
        self.state.stats.sdwebui.model_switches += 1

    # --- extras -----------------------------------------------------------------------

    async def extra_single(self, request: web.Request) -> web.Response:
        try:
            params = parse_body(await request.read(), EXTRAS_SINGLE)
            image = self._decode(params["image"])
            pictures = await self._extras(request, params, [image])
        except RequestInvalid as invalid:
            return web.json_response({"detail": invalid.detail}, status=422)
        except SdError as error:
            return error.response()
        return web.json_response({"html_info": self._html_info(params), "image": pictures[0]})

    async def extra_batch(self, request: web.Request) -> web.Response:
        try:
            params = parse_body(await request.read(), EXTRAS_BATCH)
            entries = params["imageList"] or []
            missing = [
                {
                    "loc": ["body", "imageList", index, key],
                    "msg": "field required",
                    "type": "value_error.missing",
                }
                for index, entry in enumerate(entries)
                for key in ("data", "name")
                if not isinstance(entry, dict) or entry.get(key) is None
            ]
            if missing:
                raise RequestInvalid(missing)
            images = [self._decode(entry["data"]) for entry in entries]
            pictures = await self._extras(request, params, images)
        except RequestInvalid as invalid:
            return web.json_response({"detail": invalid.detail}, status=422)
        except SdError as error:
            return error.response()
        return web.json_response({"html_info": self._html_info(params), "images": pictures})

    async def _extras(
        self, request: web.Request, params: dict[str, Any], images: list[Image.Image]
    ) -> list[str]:
        upscaler = params["upscaler_1"]
        if upscaler not in UPSCALERS:
            raise SdError(500, "AssertionError", f"could not find upscaler named {upscaler}")
        sizes = [self._upscaled_size(params, image) for image in images]
        if any(not 1 <= side <= 2 * MAX_IMAGE_SIDE for size in sizes for side in size):
            raise SdError(500, "ValueError", "upscaled size out of range")

        def draw() -> list[render.Picture]:
            return [
                render.label(
                    image.resize(size, UPSCALERS[upscaler]),
                    f"{upscaler}: {image.width}x{image.height} -> {size[0]}x{size[1]}",
                )
                for image, size in zip(images, sizes, strict=True)
            ]

        generated = await self._generate(
            request, "extras", draw, steps=1, override={}, restore_afterwards=True
        )
        return [picture.b64() for picture in generated.pictures]

    @staticmethod
    def _upscaled_size(params: dict[str, Any], image: Image.Image) -> tuple[int, int]:
        if params["resize_mode"] == 1:
            return params["upscaling_resize_w"], params["upscaling_resize_h"]
        factor = params["upscaling_resize"]
        return max(1, round(image.width * factor)), max(1, round(image.height * factor))

    @staticmethod
    def _html_info(params: dict[str, Any]) -> str:
        return (
            f"<p>Postprocess upscaler: {params['upscaler_1']}, "
            f"Postprocess upscale by: {params['upscaling_resize']}<br>{render.BANNER}</p>"
        )

    # --- models and options -----------------------------------------------------------

    async def sd_models(self, request: web.Request) -> web.Response:
        return web.json_response([checkpoint.to_json() for checkpoint in self.checkpoints])

    async def refresh_checkpoints(self, request: web.Request) -> web.Response:
        async with self.lock:
            self.checkpoints = models.scan(self.state.knobs.models_dir)
        return web.json_response(None)

    async def get_options(self, request: web.Request) -> web.Response:
        return web.json_response(self.options)

    async def set_options(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except json.JSONDecodeError as error:
            detail = [
                {"loc": ["body", error.pos], "msg": error.msg, "type": "value_error.jsondecode"}
            ]
            return web.json_response({"detail": detail}, status=422)
        if not isinstance(body, dict):
            detail = [
                {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            ]
            return web.json_response({"detail": detail}, status=422)
        wanted = body.get("sd_model_checkpoint")
        if wanted is not None:
            target = models.find(self.checkpoints, str(wanted))
            if target is None:
                return sd_error_response(500, "RuntimeError", f"model {wanted!r} not found")
            async with self.lock:
                await self._load(target)
            body = body | {"sd_model_checkpoint": target.title, "sd_checkpoint_hash": target.sha256}
        self.options.update(body)
        return web.json_response(None)

    async def unload_checkpoint(self, request: web.Request) -> web.Response:
        async with self.lock:
            self.loaded = None
        return web.json_response({})

    # --- progress, interrupt, health --------------------------------------------------

    async def progress(self, request: web.Request) -> web.Response:
        job = self.job
        if job is None:
            fraction, eta, name, steps, step, count, stamp, stopped = (
                0.0,
                0.0,
                "",
                0,
                0,
                0,
                "",
                False,
            )
        else:
            fraction = job.step / max(1, job.steps)
            elapsed = time.monotonic() - job.started
            eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
            name, steps, step, count = job.name, job.steps, job.step, 1
            stamp, stopped = job.timestamp, job.stop.is_set()
        return web.json_response(
            {
                "progress": fraction,
                "eta_relative": eta,
                "state": {
                    "skipped": False,
                    "interrupted": stopped,
                    "stopping_generation": False,
                    "job": name,
                    "job_count": count,
                    "job_timestamp": stamp,
                    "job_no": 0,
                    "sampling_step": step,
                    "sampling_steps": steps,
                },
                "current_image": None,
                "textinfo": None,
                "current_task": None,
            }
        )

    async def interrupt(self, request: web.Request) -> web.Response:
        self.state.stats.sdwebui.interrupts += 1
        if self.job is not None:
            self.job.stop.set()
            log.info("sdwebui interrupt: stopping %s at step %d", self.job.name, self.job.step)
        return web.json_response({})

    async def memory(self, request: web.Request) -> web.Response:
        total = 16 * 2**30
        return web.json_response(
            {
                "ram": {"free": total // 2, "used": total // 2, "total": total},
                "cuda": {"error": "sdq runtime emulator: no CUDA (placeholder images)"},
            }
        )

    async def samplers(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]
        )

    async def upscalers(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "name": name,
                    "model_name": None,
                    "model_path": None,
                    "model_url": None,
                    "scale": 2.0 if "2x" in name else 4.0,
                }
                for name in UPSCALERS
            ]
        )

    async def scripts(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                tab: [*SELECTABLE_SCRIPTS[tab], *ALWAYSON_SCRIPTS[tab]]
                for tab in ("txt2img", "img2img")
            }
        )


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
