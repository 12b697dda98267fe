"""The benchmark's AWS proxy (``python -m sdq_bench.proxy``): in front of moto, it delays every
request by the injected latency (an AWS round trip) and counts what the agent calls.

Only the agent talks to the proxy (the benchmark's own feeder and observer talk to moto
directly), so its counts are the agent's AWS calls. Upstream connections to moto are pooled and
kept alive; the proxy counts both the agent's connections to it and its own to moto.

``GET /__bench/stats`` answers::

    {"calls": {"sqs:ReceiveMessage": [calls, billing units, price key], ...},
     "errors": {"dynamodb:UpdateItem": n, ...},          # 4xx/5xx answers
     "messages_received": n, "empty_receives": n, "starved_receives": n,
     "agent_connections": n, "upstream_connections": n}

``starved_receives``: empty ReceiveMessage answers while fewer than ``--expect`` messages had
been received, i.e. the agent asked for work the benchmark had not fed yet.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import weakref
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, TraceConfig, web

from sdq_bench.calls import classify, received_messages

STATS_PATH = "/__bench/stats"
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
)


class Counters:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.calls: dict[str, list[Any]] = {}
        self.errors: dict[str, int] = {}
        self.messages_received = 0
        self.empty_receives = 0
        self.starved_receives = 0
        self.agent_connections = 0
        self.upstream_connections = 0

    def record(  # noqa: PLR0917 - the parts of one HTTP exchange
        self,
        method: str,
        path: str,
        query: str,
        headers: Any,
        body: bytes,
        status: int,
        resp: bytes,
    ) -> None:
        call = classify(method, path, query, headers, body, len(resp))
        entry = self.calls.setdefault(call.name, [0, 0.0, call.price_key])
        entry[0] += 1
        entry[1] += call.units
        if status >= 400:
            self.errors[call.name] = self.errors.get(call.name, 0) + 1
            return
        got = received_messages(call, resp)
        if got is None:
            return
        if got == 0:
            self.empty_receives += 1
            if self.messages_received < self.expect:
                self.starved_receives += 1
        self.messages_received += got

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {k: list(v) for k, v in sorted(self.calls.items())},
            "errors": dict(self.errors),
            "messages_received": self.messages_received,
            "empty_receives": self.empty_receives,
            "starved_receives": self.starved_receives,
            "agent_connections": self.agent_connections,
            "upstream_connections": self.upstream_connections,
        }


def build_app(target: str, delay_ms: float, counters: Counters) -> web.Application:
    transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
    trace = TraceConfig()

    async def on_connect(*_: Any) -> None:
        counters.upstream_connections += 1

    trace.on_connection_create_end.append(on_connect)
    holder: dict[str, ClientSession] = {}

    async def open_session(_: web.Application) -> None:
        holder["session"] = ClientSession(
            connector=TCPConnector(limit=0, keepalive_timeout=60),
            timeout=ClientTimeout(total=120),
            auto_decompress=False,
            trace_configs=[trace],
        )

    async def close_session(_: web.Application) -> None:
        await holder["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if request.path == STATS_PATH:
            return web.json_response(counters.snapshot())
        if transport is not None and transport not in transports:
            transports.add(transport)
            counters.agent_connections += 1
        body = await request.read()
        await asyncio.sleep(delay_ms / 1000)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with holder["session"].request(
            request.method,
            target + request.raw_path,
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                out_headers["Content-Length"] = resp.headers["Content-Length"]
            status = resp.status
        path, _, query = request.raw_path.partition("?")
        counters.record(request.method, path, query, request.headers, body, status, payload)
        return web.Response(status=status, body=payload, headers=out_headers)

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


def serve(port: int, target: str, delay_ms: float, expect: int) -> None:
    async def main() -> None:
        runner = web.AppRunner(build_app(target, delay_ms, Counters(expect)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--target", required=True, help="moto's URL")
    cli.add_argument("--delay-ms", type=float, default=0.0)
    cli.add_argument("--expect", type=int, default=0, help="messages the benchmark will feed")
    args = cli.parse_args(argv)
    serve(args.port, args.target, args.delay_ms, args.expect)
    return 0


if __name__ == "__main__":
    sys.exit(main())
