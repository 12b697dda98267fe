"""How the runtime adapters classify error answers, against small stub servers that answer
exactly what the real runtimes answer in situations the emulator cannot stage (a 500 whose
health call then fails, a proxy's plain-text 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sdq_contracts.messages import TaskMessage
from sdq_observability.logs import configure_logging
from sdq_queue_agent.adapters.comfyui import ComfyUiRuntime
from sdq_queue_agent.adapters.runtime_http import runtime_session
from sdq_queue_agent.adapters.sdwebui import SdWebUiRuntime
from sdq_queue_agent.errors import RuntimeRejectedError, RuntimeUnavailableError

pytestmark = pytest.mark.integration

NAN_BODY = {
    "error": "NansException",
    "detail": "",
    "body": "",
    "errors": "A tensor with NaNs was produced in Unet. Use --disable-nan-check to skip.",
}


async def _serve(routes: list[web.RouteDef]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    configure_logging("INFO")  # to this test's stdout (an earlier test's may be closed)
    async with runtime_session() as s:
        yield s


def _t2i() -> TaskMessage:
    return TaskMessage.model_validate(
        {"id": "t", "runtime": "sd", "tasktype": "text-to-image", "content": {"prompt": "x"}}
    )


async def _run_sdwebui(
    session: aiohttp.ClientSession, txt2img: Callable[[], web.Response], options_status: int
) -> None:
    async def generate(_: web.Request) -> web.Response:
        return txt2img()

    async def options(_: web.Request) -> web.Response:
        return web.json_response({"sd_model_checkpoint": None}, status=options_status)

    runner, url = await _serve(
        [web.post("/sdapi/v1/txt2img", generate), web.get("/sdapi/v1/options", options)]
    )
    try:
        runtime = SdWebUiRuntime(session, url, static_model=None, dynamic_model=False)
        await runtime.run(runtime.prepare(_t2i(), {"prompt": "x"}))
    finally:
        await runner.cleanup()


async def test_sdwebui_nan_check_with_a_healthy_runtime_is_permanent(session: Any) -> None:
    with pytest.raises(RuntimeRejectedError, match="NansException: A tensor with NaNs"):
        await _run_sdwebui(session, lambda: web.json_response(NAN_BODY, status=500), 200)


async def test_sdwebui_500_with_a_failing_health_call_is_transient(session: Any) -> None:
    with pytest.raises(RuntimeUnavailableError, match="health call failed"):
        await _run_sdwebui(session, lambda: web.json_response(NAN_BODY, status=500), 503)


@pytest.mark.parametrize(
    "answer",
    [
        lambda: web.Response(status=500, text="Internal Server Error"),  # not SD WebUI's body
        lambda: web.Response(status=502, text="Bad Gateway"),
        lambda: web.json_response({**NAN_BODY, "error": "OutOfMemoryError"}, status=500),
    ],
    ids=["plain-500", "502", "out-of-memory"],
)
async def test_sdwebui_outages_stay_transient(session: Any, answer: Any) -> None:
    with pytest.raises(RuntimeUnavailableError):
        await _run_sdwebui(session, answer, 200)


async def test_sdwebui_connection_refused_is_transient(session: Any) -> None:
    runner, url = await _serve([])
    await runner.cleanup()  # nothing listens there any more
    runtime = SdWebUiRuntime(session, url, static_model=None, dynamic_model=False)
    with pytest.raises(RuntimeUnavailableError, match="unreachable"):
        await runtime.run(runtime.prepare(_t2i(), {"prompt": "x"}))


async def test_comfyui_cancel_falls_back_once_when_the_jobs_route_is_missing(
    session: Any,
) -> None:
    """v0.8.0: no ``POST /api/jobs/{id}/cancel`` (aiohttp's plain 404): asked once, then the
    agent goes straight to ``/interrupt`` + ``/queue`` delete."""
    calls: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        calls.append(f"{request.method} {request.path}")
        return await handler(request)

    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application(middlewares=[record])
    app.add_routes([web.post("/interrupt", ok), web.post("/queue", ok)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        runtime = ComfyUiRuntime(session, f"http://{host}:{port}")
        for prompt_id in ("p1", "p2"):
            await runtime._cancel_prompt(prompt_id)
    finally:
        await runner.cleanup()
    assert calls == [
        "POST /api/jobs/p1/cancel",
        "POST /interrupt",
        "POST /queue",
        "POST /interrupt",
        "POST /queue",
    ]
