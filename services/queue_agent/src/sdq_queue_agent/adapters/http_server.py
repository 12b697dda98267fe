"""Health and metrics HTTP server: /healthz, /readyz, /drained, /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sdq_queue_agent.adapters.prometheus import PrometheusMetrics


@dataclass
class HealthState:
    alive: bool = True
    ready: bool = False
    stopping: bool = False
    drained: bool = False


def _status(ok: bool, text: str) -> web.Response:
    return web.Response(status=200 if ok else 503, text=text + "\n")


async def start_health_server(
    state: HealthState, metrics: PrometheusMetrics, port: int
) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return _status(state.alive, "alive" if state.alive else "worker loop died")

    async def readyz(_: web.Request) -> web.Response:
        ok = state.ready and not state.stopping
        return _status(
            ok, "ready" if ok else ("stopping" if state.stopping else "runtime not ready")
        )

    async def drained(_: web.Request) -> web.Response:
        return _status(state.drained, "drained" if state.drained else "not drained")

    async def metrics_view(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/drained", drained)
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Pod-local probes and scrapes arrive on the pod IP, so listen on every interface.
    site = web.TCPSite(runner, host="0.0.0.0", port=port)  # noqa: S104
    await site.start()
    return runner
