"""Emulated ComfyUI (v0.8) HTTP + WebSocket API — sdq runtime EMULATOR (placeholder images).

Prompts run one at a time in queue order on a worker task the app owns. Per-prompt events go
only to the socket whose ``clientId`` posted the prompt; queue ``status`` goes to every socket.

Caching quirk, emulated per node like ComfyUI's default cache: a node whose class, literal
inputs and upstream nodes equal a node of the previous prompt is not run again (it is listed
in ``execution_cached``). A cached output node re-sends its ``executed`` event and appears in
history only when the prompt has a ``client_id``; so an identical graph re-posted without
``client_id`` finishes "success" with empty history ``outputs`` and writes no new file.
A prompt that runs nothing is not a generation (no latency, no fault consumed).
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from sdq_runtime_emulator import comfy_graph, models, render
from sdq_runtime_emulator.comfy_nodes import (
    NODES,
    STATIC_COMBOS,
    NodeFailure,
    NodeSpec,
    RunContext,
    input_files,
    load_image_problem,
    resolve_annotated,
)
from sdq_runtime_emulator.state import EmulatorState, GenerationFault, Outcome, log, pace

# ComfyUI v0.8.0's model folders (GET /models), in its order.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


class Interrupted(Exception):
    """The prompt was interrupted before or inside ``node_id``."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


class Died(Exception):
    """The exit fault fired in the in-process form."""


@dataclass
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        client_id = self.extra_data.get("client_id")
        return str(client_id) if client_id else None

    def entry(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass(frozen=True)
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class Run:
    """Book-keeping of the prompt being executed."""

    item: QueueItem
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[list[Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    current: str = ""


def now_ms() -> int:
    return int(time.time() * 1000)


def comfy_error_response(status: int, kind: str, message: str, details: str = "") -> web.Response:
    body = {"error": comfy_graph.error(kind, message, details), "node_errors": {}}
    return web.json_response(body, status=status)


class ComfyUi:
    """Handlers, queue and executor of the ComfyUI routes; one instance per emulator app."""

    def __init__(self, state: EmulatorState, data_dir: Path) -> None:
        self.state = state
        self.data_dir = data_dir
        self.pending: list[QueueItem] = []
        self.wakeup = asyncio.Event()
        self.run: Run | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, tuple[web.WebSocketResponse, web.Request]] = {}
        self.cache: dict[str, CacheEntry] = {}
        self.loaded_checkpoint: str | None = None
        self.counter = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/prompt", self.post_prompt),
            web.get("/prompt", self.get_prompt),
            web.get("/ws", self.websocket),
            web.get("/history", self.get_history),
            web.get("/history/{prompt_id}", self.get_history_item),
            web.post("/history", self.post_history),
            web.get("/queue", self.get_queue),
            web.post("/queue", self.post_queue),
            web.post("/interrupt", self.interrupt),
            web.get("/system_stats", self.system_stats),
            web.get("/object_info", self.object_info),
            web.get("/object_info/{node_class}", self.object_info_one),
            web.get("/features", self.features),
            web.get("/models", self.model_folders),
            web.get("/models/{folder}", self.model_files),
            web.get("/api/jobs", self.jobs),
            web.get("/api/jobs/{job_id}", self.job),
            web.post("/api/jobs/{job_id}/cancel", self.cancel_job),
        ]

    # --- app lifecycle ----------------------------------------------------------------

    async def worker(self) -> None:
        """Execute queued prompts one at a time, lowest number first, until cancelled."""
        while True:
            while not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
            item = self.pending.pop(0)
            await self._execute(item)

    async def close_sockets(self) -> None:
        for ws, _ in list(self.sockets.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # --- prompt submission ------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except json.JSONDecodeError as ex:
            return comfy_error_response(400, "invalid_prompt", "Invalid JSON body", str(ex))
        if not isinstance(body, dict) or "prompt" not in body:
            return comfy_error_response(
                400, "no_prompt", "No prompt provided", "No prompt provided"
            )
        number: float = self.counter
        if "number" in body:
            number = float(body["number"])
        elif body.get("front"):
            number = -number
        self.counter += 1
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        if self.state.knobs.comfyui_api == "newer" and not _canonical_uuid(prompt_id):
            return comfy_error_response(
                400,
                "invalid_prompt_id",
                "prompt_id must be a canonical UUID",
                f"prompt_id: {prompt_id!r}",
            )
        checked = comfy_graph.validate(
            prompt,
            self.combos(),
            {"LoadImage.image": lambda name: load_image_problem(self.data_dir, name)},
        )
        if checked.error is not None:
            log.info("comfyui prompt %s invalid: %s", prompt_id, checked.error["message"])
            return web.json_response(
                {"error": checked.error, "node_errors": checked.node_errors}, status=400
            )
        extra_data = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra_data["client_id"] = str(body["client_id"])
        extra_data["create_time"] = now_ms()
        item = QueueItem(number, prompt_id, prompt, extra_data, checked.outputs)
        self.pending.append(item)
        self.pending.sort(key=lambda queued: queued.number)
        self.wakeup.set()
        await self._broadcast_status()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors}
        )

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._remaining()}})

    def combos(self) -> dict[str, list[str]]:
        checkpoints = [checkpoint.name for checkpoint in models.scan(self.state.knobs.models_dir)]
        return STATIC_COMBOS | {
            "CheckpointLoaderSimple.ckpt_name": checkpoints,
            "LoadImage.image": input_files(self.data_dir),
            "UpscaleModelLoader.model_name": models.upscale_models(self.state.knobs.models_dir),
        }

    # --- execution --------------------------------------------------------------------

    async def _execute(self, item: QueueItem) -> None:
        run = self.run = Run(item)
        await self._event(
            run, "execution_start", {"prompt_id": item.prompt_id, "timestamp": now_ms()}
        )
        order = comfy_graph.execution_order(item.prompt, item.outputs)
        keys = comfy_graph.signatures(item.prompt, order, self._file_stamp)
        cached = [node_id for node_id in order if keys[node_id] in self.cache]
        await self._event(
            run,
            "execution_cached",
            {"nodes": cached, "prompt_id": item.prompt_id, "timestamp": now_ms()},
        )
        to_run = [node_id for node_id in order if node_id not in cached]
        heavy = self._heavy_node(item.prompt, to_run)
        fault = GenerationFault.NONE
        if heavy is not None:
            fault = self.state.take_generation_fault()
            self.state.generation_started("comfyui")
            log.info("comfyui prompt %s started (fault=%s)", item.prompt_id, fault.value)
        outcome, status_str = "failed", "error"
        values: dict[str, tuple[Any, ...]] = {}
        next_cache: dict[str, CacheEntry] = {}
        try:
            for node_id in order:
                entry = self.cache.get(keys[node_id])
                if entry is None:
                    entry = await self._run_node(run, node_id, values, node_id == heavy, fault)
                elif entry.ui is not None and item.client_id is not None:
                    await self._executed(run, node_id, entry.ui)
                run.executed.append(node_id)
                values[node_id] = entry.outputs
                next_cache[keys[node_id]] = entry
            await self._event(
                run, "execution_success", {"prompt_id": item.prompt_id, "timestamp": now_ms()}
            )
            outcome, status_str = "completed", "success"
        except NodeFailure as failure:
            await self._fail(run, failure)
        except Interrupted as interrupted:
            outcome = "interrupted"
            await self._event(run, "execution_interrupted", self._where(run, interrupted.node_id))
        except Died:
            outcome = "died"
        self.cache = next_cache
        self.run = None
        if heavy is not None:
            self.state.generation_ended("comfyui", outcome)
            log.info("comfyui prompt %s %s", item.prompt_id, outcome)
        if outcome == "died":
            await self._forget()
            return
        self.history[item.prompt_id] = {
            "prompt": item.entry(),
            "outputs": run.outputs,
            "status": {
                "status_str": status_str,
                "completed": status_str == "success",
                "messages": run.messages,
            },
            "meta": {
                node_id: {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
                for node_id in run.outputs
            },
        }
        await self._send(item.client_id, "executing", {"node": None, "prompt_id": item.prompt_id})
        await self._broadcast_status()

    @staticmethod
    def _heavy_node(prompt: dict[str, Any], to_run: list[str]) -> str | None:
        """Where the generation's latency goes: the sampler, else the first output node."""
        specs = {node_id: NODES[prompt[node_id]["class_type"]] for node_id in to_run}
        for wanted in ("sampler", "output_node"):
            for node_id, spec in specs.items():
                if getattr(spec, wanted):
                    return node_id
        return None

    async def _run_node(
        self,
        run: Run,
        node_id: str,
        values: dict[str, tuple[Any, ...]],
        heavy: bool,
        fault: GenerationFault,
    ) -> CacheEntry:
        item = run.item
        run.current = node_id
        if run.stop.is_set():
            raise Interrupted(node_id)
        await self._send(
            item.client_id,
            "executing",
            {"node": node_id, "display_node": node_id, "prompt_id": item.prompt_id},
        )
        node = item.prompt[node_id]
        spec = NODES[node["class_type"]]
        inputs = self._inputs(spec, node["inputs"], values)
        if spec.loads_checkpoint and inputs["ckpt_name"] != self.loaded_checkpoint:
            await asyncio.sleep(self.state.knobs.model_switch_latency_s)
            self.loaded_checkpoint = inputs["ckpt_name"]
            self.state.stats.comfyui.model_switches += 1
        deadline = time.monotonic() + self.state.knobs.generation_latency_s
        if heavy and fault is GenerationFault.EXECUTION_ERROR:
            await pace(
                deadline=(time.monotonic() + deadline) / 2,
                stop=run.stop,
                fault=GenerationFault.NONE,
                steps=1,
            )
            raise NodeFailure(
                "RuntimeError",
                "sdq runtime emulator: injected execution error (like CUDA out of memory)",
            )
        context = RunContext(self.data_dir, self.state.next_serial)
        outputs, ui = await asyncio.to_thread(spec.run, context, inputs)
        if heavy:
            await self._spend(run, node_id, spec, inputs, deadline=deadline, fault=fault)
        entry = CacheEntry(outputs, ui)
        if ui is not None:
            await self._executed(run, node_id, ui)
        return entry

    async def _spend(
        self,
        run: Run,
        node_id: str,
        spec: NodeSpec,
        inputs: dict[str, Any],
        *,
        deadline: float,
        fault: GenerationFault,
    ) -> None:
        steps = int(inputs["steps"]) if spec.sampler else 1

        async def progress(step: int) -> None:
            await self._send(
                run.item.client_id,
                "progress",
                {"value": step, "max": steps, "prompt_id": run.item.prompt_id, "node": node_id},
            )

        outcome = await pace(
            deadline=deadline,
            stop=run.stop,
            fault=fault,
            steps=steps,
            on_step=progress if spec.sampler else None,
            die=lambda: self.state.die(lambda: None),
        )
        if outcome is Outcome.INTERRUPTED:
            raise Interrupted(node_id)
        if outcome is Outcome.DIED:
            raise Died

    @staticmethod
    def _inputs(
        spec: NodeSpec, raw: dict[str, Any], values: dict[str, tuple[Any, ...]]
    ) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        given = [one for one in spec.optional if one.name in raw]
        for input_spec in (*spec.required, *given):
            value = raw[input_spec.name]
            if isinstance(value, list):
                inputs[input_spec.name] = values[str(value[0])][value[1]]
            elif input_spec.linked:
                raise NodeFailure(
                    "AttributeError",
                    f"{input_spec.name}: expected a link to an "
                    f"{input_spec.kind} output, got {value!r}",
                )
            else:
                inputs[input_spec.name] = comfy_graph.literal(input_spec, value)
        return inputs

    async def _executed(self, run: Run, node_id: str, ui: dict[str, Any]) -> None:
        run.outputs[node_id] = ui
        await self._send(
            run.item.client_id,
            "executed",
            {
                "node": node_id,
                "display_node": node_id,
                "output": ui,
                "prompt_id": run.item.prompt_id,
            },
        )

    async def _fail(self, run: Run, failure: NodeFailure) -> None:
        data = self._where(run, run.current) | {
            "exception_message": str(failure),
            "exception_type": failure.exception_type,
            "traceback": traceback.format_tb(failure.__traceback__),
            "current_inputs": {},
            "current_outputs": list(run.outputs),
        }
        await self._event(run, "execution_error", data)

    @staticmethod
    def _where(run: Run, node_id: str) -> dict[str, Any]:
        return {
            "prompt_id": run.item.prompt_id,
            "node_id": node_id,
            "node_type": run.item.prompt[node_id]["class_type"],
            "executed": list(run.executed),
            "timestamp": now_ms(),
        }

    def _file_stamp(self, node_id: str) -> str:
        """LoadImage's IS_CHANGED: a replaced input file is a different input."""
        run_item = self.run.item if self.run else None
        if run_item is None or run_item.prompt[node_id]["class_type"] != "LoadImage":
            return ""
        path = resolve_annotated(self.data_dir, str(run_item.prompt[node_id]["inputs"]["image"]))
        if path is None or not path.is_file():
            return "missing"
        stat = path.stat()
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    async def _forget(self) -> None:
        """In-process stand-in for a process death: sockets drop, memory is lost."""
        for _, request in list(self.sockets.values()):
            if request.transport is not None:
                request.transport.abort()
        self.sockets.clear()
        self.pending.clear()
        self.history.clear()
        self.cache.clear()
        self.loaded_checkpoint = None

    # --- events -----------------------------------------------------------------------

    async def _event(self, run: Run, event: str, data: dict[str, Any]) -> None:
        """A per-prompt event that is also kept in the history status messages."""
        run.messages.append([event, data])
        await self._send(run.item.client_id, event, data)

    async def _send(self, client_id: str | None, event: str, data: dict[str, Any]) -> None:
        entry = self.sockets.get(client_id) if client_id else None
        if entry is not None:
            await _send_json(entry[0], {"type": event, "data": data})

    async def _broadcast_status(self) -> None:
        message = {"type": "status", "data": {"status": self._status()}}
        for ws, _ in list(self.sockets.values()):
            await _send_json(ws, message)

    def _status(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self._remaining()}}

    def _remaining(self) -> int:
        return len(self.pending) + (1 if self.run is not None else 0)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = (ws, request)
        try:
            await _send_json(ws, {"type": "status", "data": {"status": self._status(), "sid": sid}})
            async for _message in ws:
                continue  # the real server only reads feature flags here
        finally:
            if self.sockets.get(sid, (None, None))[0] is ws:
                del self.sockets[sid]
        return ws

    # --- history, queue, interrupt ----------------------------------------------------

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        max_items = request.query.get("max_items")
        if max_items is not None and max_items.isdigit():
            items = items[-int(max_items) :] if int(max_items) else []
        return web.json_response(dict(items))

    async def get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self.history.clear()
        for prompt_id in body.get("delete") or []:
            self.history.pop(str(prompt_id), None)
        return web.Response(status=200)

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.run.item.entry()] if self.run is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [item.entry() for item in self.pending]}
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self.pending.clear()
        doomed = {str(prompt_id) for prompt_id in body.get("delete") or []}
        self.pending = [item for item in self.pending if item.prompt_id not in doomed]
        await self._broadcast_status()
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        wanted = body.get("prompt_id")
        self.state.stats.comfyui.interrupts += 1
        run = self.run
        if run is not None and (not wanted or wanted == run.item.prompt_id):
            run.stop.set()
            log.info("comfyui interrupt: stopping prompt %s", run.item.prompt_id)
        return web.Response(status=200)

    # --- introspection ----------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        total = 16 * 2**30
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": total,
                    "ram_free": total // 2,
                    "comfyui_version": "0.8.0",
                    "python_version": "3.11",
                    "pytorch_version": "none (emulator)",
                    "embedded_python": False,
                    "argv": ["main.py"],
                    "emulator": render.BANNER,
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": total,
                        "vram_free": total // 2,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "supports_preview_metadata": True,
                "max_upload_size": 100 * 1024 * 1024,
                "extension": {"manager": {"supports_v4": True}},
            }
        )

    async def model_folders(self, request: web.Request) -> web.Response:
        return web.json_response(list(MODEL_FOLDERS))

    async def model_files(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404, text="404: Not Found")
        knobs = self.state.knobs
        if folder == "checkpoints":
            return web.json_response([c.name for c in models.scan(knobs.models_dir)])
        if folder == "upscale_models":
            return web.json_response(models.upscale_models(knobs.models_dir))
        return web.json_response([])

    # --- jobs (GET routes as in v0.8.0; cancel only with comfyui_api=newer) ------------

    def _job_of(self, prompt_id: str, *, full: bool) -> dict[str, Any] | None:
        if prompt_id in self.history:
            entry = self.history[prompt_id]
            status = entry["status"]
            error = next((m[1] for m in status["messages"] if m[0] == "execution_error"), None)
            ends = [
                m[1].get("timestamp")
                for m in status["messages"]
                if m[0] in ("execution_success", "execution_error", "execution_interrupted")
            ]
            starts = [
                m[1].get("timestamp") for m in status["messages"] if m[0] == "execution_start"
            ]
            item = entry["prompt"]
            job: dict[str, Any] = {
                "id": prompt_id,
                "status": "failed" if status["status_str"] == "error" else "completed",
                "priority": item[0],
                "create_time": item[3].get("create_time"),
                "execution_start_time": starts[0] if starts else None,
                "execution_end_time": ends[-1] if ends else None,
                "execution_error": error,
                # As v0.8.0's jobs summary: saved-file items only (not `animated`, not text).
                "outputs_count": sum(
                    isinstance(item, dict)
                    for out in entry["outputs"].values()
                    for key, items in out.items()
                    if key != "animated" and isinstance(items, list)
                    for item in items
                ),
            }
            job = {k: v for k, v in job.items() if v is not None}
            if full:
                job["outputs"] = entry["outputs"]
                job["execution_status"] = status
                job["workflow"] = {"prompt": item[2], "extra_data": item[3]}
            return job
        if self.run is not None and self.run.item.prompt_id == prompt_id:
            return self._queued_job(self.run.item, "in_progress")
        for queued in self.pending:
            if queued.prompt_id == prompt_id:
                return self._queued_job(queued, "pending")
        return None

    @staticmethod
    def _queued_job(item: QueueItem, status: str) -> dict[str, Any]:
        job = {
            "id": item.prompt_id,
            "status": status,
            "priority": item.number,
            "create_time": item.extra_data.get("create_time"),
            "outputs_count": 0,
        }
        return {k: v for k, v in job.items() if v is not None}

    async def jobs(self, request: web.Request) -> web.Response:
        running = [self.run.item.prompt_id] if self.run is not None else []
        ids = [*running, *(item.prompt_id for item in self.pending), *reversed(self.history)]
        query = request.query
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        limit: int | None = None
        if "limit" in query:
            if not query["limit"].lstrip("-").isdigit():
                return web.json_response({"error": "limit must be an integer"}, status=400)
            limit = int(query["limit"])
            if limit <= 0:
                return web.json_response({"error": "limit must be a positive integer"}, status=400)
        jobs = [job for one in ids if (job := self._job_of(one, full=False)) is not None]
        page = jobs[offset : offset + limit if limit is not None else None]
        return web.json_response(
            {
                "jobs": page,
                "pagination": {
                    "offset": offset,
                    "limit": limit,
                    "total": len(jobs),
                    "has_more": offset + len(page) < len(jobs),
                },
            }
        )

    async def job(self, request: web.Request) -> web.Response:
        job = self._job_of(request.match_info["job_id"], full=True)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    async def cancel_job(self, request: web.Request) -> web.Response:
        if self.state.knobs.comfyui_api != "newer":
            return web.Response(status=404, text="404: Not Found")
        prompt_id = request.match_info["job_id"]
        self.state.stats.comfyui.interrupts += 1
        if self.run is not None and self.run.item.prompt_id == prompt_id:
            self.run.stop.set()
            log.info("comfyui job cancel: stopping prompt %s", prompt_id)
        elif any(item.prompt_id == prompt_id for item in self.pending):
            self.pending = [item for item in self.pending if item.prompt_id != prompt_id]
            await self._broadcast_status()
        else:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response({"id": prompt_id, "cancelled": True})

    async def object_info(self, request: web.Request) -> web.Response:
        combos = self.combos()
        return web.json_response({name: spec.object_info(combos) for name, spec in NODES.items()})

    async def object_info_one(self, request: web.Request) -> web.Response:
        spec = NODES.get(request.match_info["node_class"])
        if spec is None:
            return web.json_response({})
        return web.json_response({spec.name: spec.object_info(self.combos())})


def _canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except json.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def _send_json(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
    if ws.closed:
        return
    try:
        await ws.send_json(message)
    except ConnectionError:
        log.info("websocket gone while sending %s", message["type"])
