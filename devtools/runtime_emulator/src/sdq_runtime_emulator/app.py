"""Composition of the sdq runtime EMULATOR app: SD WebUI + ComfyUI + InvokeAI + control routes.

The control routes (``/emulator/knobs``, ``/emulator/stats``) answer at all times; every
other route first passes the slow-start and injected-failure checks of the middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from sdq_runtime_emulator import render
from sdq_runtime_emulator.comfy import ComfyUi, comfy_error_response
from sdq_runtime_emulator.comfy_files import ComfyFiles
from sdq_runtime_emulator.invokeai import ENQUEUE_PATH_SUFFIX, InvokeAi
from sdq_runtime_emulator.invokeai import detail as invokeai_error_response
from sdq_runtime_emulator.knobs import KnobError, Knobs
from sdq_runtime_emulator.sdwebui import GENERATION_PATHS, SdWebUi, sd_error_response
from sdq_runtime_emulator.state import EmulatorState, log

STATE = web.AppKey("state", EmulatorState)
CONTROL_PREFIX = "/emulator/"
SD_PREFIXES = ("/sdapi/", "/internal/")
INVOKEAI_PREFIX = "/api/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    knobs: Knobs | None = None,
    *,
    data_dir: str | Path | None = None,
    allow_process_exit: bool = False,
) -> web.Application:
    """Build the emulator app.

    ``data_dir`` holds ComfyUI's input/output/temp folders (default: a temporary directory
    removed on cleanup). ``allow_process_exit`` lets the exit fault end the process
    (only the command-line form sets it).
    """
    state = EmulatorState(knobs or Knobs(), allow_process_exit=allow_process_exit)
    owned_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="sdq-emulator-")) if data_dir is None else Path(data_dir)
    sdwebui = SdWebUi(state)
    comfy = ComfyUi(state, root)
    files = ComfyFiles(root)
    invokeai = InvokeAi(state)

    app = web.Application(middlewares=[_guard], client_max_size=64 * 2**20)
    app[STATE] = state
    app.add_routes(sdwebui.routes())
    app.add_routes(comfy.routes())
    app.add_routes(files.routes())
    app.add_routes(invokeai.routes())
    app.add_routes(
        [
            web.get("/emulator/knobs", _get_knobs),
            web.post("/emulator/knobs", _set_knobs),
            web.get("/emulator/stats", _get_stats),
        ]
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        worker = asyncio.create_task(comfy.worker(), name="comfyui-prompt-worker")
        invokeai_worker = asyncio.create_task(invokeai.worker(), name="invokeai-queue-worker")
        log.info("%s: started (data dir %s)", render.BANNER, root)
        yield
        for task in (worker, invokeai_worker):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if owned_dir:
            shutil.rmtree(root, ignore_errors=True)

    async def close_sockets(app: web.Application) -> None:
        await comfy.close_sockets()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_sockets)
    return app


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    state.stats.requests[f"{request.method} {route}"] += 1
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    if not state.ready():
        if state.knobs.slow_start_mode == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        return web.Response(status=503, text=f"{render.BANNER}: not ready (slow start)")
    generation = request.method == "POST" and (
        request.path in GENERATION_PATHS
        or request.path == "/prompt"
        or (request.path.startswith(INVOKEAI_PREFIX) and request.path.endswith(ENQUEUE_PATH_SUFFIX))
    )
    status = state.take_http_failure(generation_route=generation)
    if status is None:
        return await handler(request)
    log.info("injecting HTTP %d on %s %s", status, request.method, request.path)
    message = f"sdq runtime emulator: injected failure (HTTP {status})"
    if request.path.startswith(INVOKEAI_PREFIX):
        return invokeai_error_response(status, message)
    if request.path.startswith(SD_PREFIXES):
        if status < 500:  # v1.10.1 renders an HTTPException's text in detail only
            return sd_error_response(status, "HTTPException", "", message)
        return sd_error_response(status, "RuntimeError", message)
    if status < 500:
        return comfy_error_response(status, "emulator_injected_failure", message)
    return web.Response(status=status, text=f"{status} Internal Server Error\n\n{message}")


async def _get_knobs(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].knobs.to_json())


async def _set_knobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise KnobError("body: expected a JSON object of knob values")
        state.set_knobs(state.knobs.updated(changes))
    except (ValueError, TypeError) as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.json_response(state.knobs.to_json())


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.to_json())
