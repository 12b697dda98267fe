"""moto's server app behind a keep-alive HTTP/1.1 front (``python -m sdq_bench.moto_front``).

``moto_server`` runs moto's WSGI app on werkzeug's development server, which answers every
request with ``Connection: close``: each AWS call then pays a TCP connect and a new server
thread, and in the benchmark that cost is moto's, not the agent's. Here aiohttp keeps
connections alive and runs the same WSGI app (moto's ``DomainDispatcherApplication``) in a
thread pool, one request at a time per thread, like werkzeug's threaded server did. moto's
DynamoDB backend is not thread-safe (its ``transact_write_items`` deep-copies every table it
touches and, when any condition fails, puts those copies back, undoing what other threads wrote
meanwhile: in this bench at 0.1 s/image, 11 of 28 announce transactions were refused because of
``complete`` writes lost that way), so DynamoDB requests take one lock for their whole request;
a thread waiting for it spends no CPU, so the per-call CPU below stays moto's work. moto is
prepared as the test fixture's and the local stack's moto servers are
(``sdq_moto.prepare_moto_server``, ``libs/moto/README.md``): besides that lock, a failed
transaction is rolled back by item instead of by deep copies of whole tables, and work moto
repeats on every request (backend lookup, method list, update- and condition-expression
parsing, the update's tree-only validation) is done once. Every call still reaches moto and is
served by it.

``GET /__bench/stats`` answers ``{"connections": TCP connections that carried AWS requests,
"requests": n,
"cpu_ms": {"service:Operation": [calls, CPU ms in moto]}}``: that connections are reused, and
what each kind of call costs moto (its handler thread's CPU time; the GIL makes it approximate).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from sdq_bench.calls import classify
from sdq_moto import prepare_moto_server

STATS_PATH = "/__bench/stats"
# Response headers aiohttp sets itself (a WSGI app's own would be duplicated or wrong).
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_environ(request: web.Request, body: bytes, port: int) -> dict[str, Any]:
    """The WSGI environ werkzeug's server would build for this request."""
    raw_path = request.raw_path
    path, _, query = raw_path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the percent-decoded path as bytes, carried in a latin-1 str
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": raw_path,
        "RAW_URI": raw_path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "REMOTE_ADDR": request.remote or "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is already read (and de-chunked)
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call_wsgi(
    app: WsgiApp, environ: dict[str, Any]
) -> tuple[int, list[tuple[str, str]], bytes, float]:
    """Status, headers, body, and the CPU seconds this thread spent on them."""
    started = time.thread_time()
    status_headers: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status_headers[:] = [status, headers]
        return chunks.append

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = status_headers
    cpu = time.thread_time() - started
    return int(status.split(None, 1)[0]), headers, b"".join(chunks), cpu


def build_app(wsgi: WsgiApp, port: int, workers: int = 64) -> web.Application:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="moto")
    transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
    stats: dict[str, Any] = {"connections": 0, "requests": 0, "cpu_ms": {}}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(stats)
        transport = request.transport
        if transport is not None and transport not in transports:
            transports.add(transport)
            stats["connections"] += 1
        stats["requests"] += 1
        body = await request.read()
        environ = wsgi_environ(request, body, port)
        loop = asyncio.get_running_loop()
        status, headers, payload, cpu = await loop.run_in_executor(pool, call_wsgi, wsgi, environ)
        path, _, query = request.raw_path.partition("?")
        name = classify(request.method, path, query, request.headers, body).name
        entry = stats["cpu_ms"].setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += cpu * 1000
        response = web.Response(status=status, body=payload)
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length" and request.method == "HEAD":
                response.headers[name] = value  # HEAD: the object's size, with no body
            elif lower not in _HOP:
                response.headers.add(name, value)
        return response

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", handle)

    async def shutdown(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shutdown)
    return app


def moto_wsgi_app() -> WsgiApp:
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - heavy, only in the server
        DomainDispatcherApplication,
        create_backend_app,
    )

    prepare_moto_server()
    app = DomainDispatcherApplication(create_backend_app)
    return app


def serve(host: str, port: int) -> None:
    async def main() -> None:
        runner = web.AppRunner(build_app(moto_wsgi_app(), port), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("-H", "--host", default="127.0.0.1")
    cli.add_argument("-p", "--port", type=int, required=True)
    args = cli.parse_args(argv)
    serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
