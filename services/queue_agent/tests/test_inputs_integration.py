"""SSRF-safe input downloads and signed webhooks against real 127.0.0.1 HTTP servers."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from sdq_queue_agent.adapters.http_fetch import UrlFetcher, safe_session
from sdq_queue_agent.adapters.webhook import HttpWebhookSender
from sdq_queue_agent.errors import InputRefusedError, InputTooLargeError
from sdq_queue_agent.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

pytestmark = pytest.mark.integration

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture
async def server() -> AsyncIterator[dict[str, Any]]:
    """127.0.0.1 server: /img.png, /big (chunked, 2 MiB), /text, /redirect?to=, /hook."""
    state: dict[str, Any] = {"hooks": [], "hook_status": [500, 200]}

    async def img(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(32):
            await resp.write(b"\x00" * 65536)
        return resp

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def hook(request: web.Request) -> web.Response:
        state["hooks"].append((dict(request.headers), await request.read()))
        status = state["hook_status"].pop(0) if state["hook_status"] else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/img.png", img)
    app.router.add_get("/big", big)
    app.router.add_get("/text", text)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state["base"] = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def _fetch(
    url: str, allowlist: tuple[Any, ...] = LOOPBACK, max_bytes: int = 1 << 20
) -> tuple[bytes, str]:
    async with safe_session(allowlist, connect_timeout=2) as session:
        return await UrlFetcher(session, allowlist, max_bytes=max_bytes, read_timeout=5).fetch_url(
            url
        )


async def test_allowed_image_is_fetched(server: dict[str, Any]) -> None:
    assert await _fetch(f"{server['base']}/img.png") == (PNG, "image/png")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.2:9/img.png", "loopback"),
        ("http://10.0.0.1/img.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]:9/img.png", "loopback"),
        ("http://0.0.0.0:9/img.png", "unspecified"),
        ("file:///etc/passwd", "scheme"),
        ("ftp://127.0.0.1/x.png", "scheme"),
    ],
)
async def test_ssrf_targets_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InputRefusedError, match=reason):
        await _fetch(url)


async def test_hostname_resolving_to_loopback_is_refused_without_allowlist(
    server: dict[str, Any],
) -> None:
    port = server["base"].rsplit(":", 1)[1]
    with pytest.raises(InputRefusedError, match="loopback"):
        await _fetch(f"http://localhost:{port}/img.png", allowlist=())


@pytest.mark.parametrize(
    "target", ["http://127.0.0.2:9/x.png", "http://169.254.169.254/", "http://10.0.0.1/"]
)
async def test_redirect_to_a_refused_target_is_refused(server: dict[str, Any], target: str) -> None:
    with pytest.raises(InputRefusedError):
        await _fetch(f"{server['base']}/redirect?to={target}")


async def test_redirect_to_an_allowed_target_is_followed(server: dict[str, Any]) -> None:
    assert (await _fetch(f"{server['base']}/redirect?to=/img.png"))[0] == PNG


async def test_oversize_download_is_cut_off(server: dict[str, Any]) -> None:
    with pytest.raises(InputTooLargeError, match="cut off"):
        await _fetch(f"{server['base']}/big", max_bytes=256 * 1024)


async def test_non_image_content_is_refused(server: dict[str, Any]) -> None:
    with pytest.raises(InputRefusedError, match="not an image"):
        await _fetch(f"{server['base']}/text")


async def test_webhook_is_signed_and_retried(server: dict[str, Any]) -> None:
    body = json.dumps({"id": "t1", "status": "completed"}).encode()
    async with safe_session(LOOPBACK, connect_timeout=2) as session:
        sender = HttpWebhookSender(
            session, LOOPBACK, b"s3cret-key", attempts=3, backoff=0.01, timeout=5
        )
        assert await sender.deliver(f"{server['base']}/hook", body, "t1") is True
    assert len(server["hooks"]) == 2  # 500, then 200
    headers, received = server["hooks"][-1]
    assert received == body
    assert verify(b"s3cret-key", int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])


async def test_webhook_to_a_refused_address_is_not_sent() -> None:
    async with safe_session(LOOPBACK, connect_timeout=2) as session:
        sender = HttpWebhookSender(session, LOOPBACK, b"k", attempts=3, backoff=0.01, timeout=5)
        assert await sender.deliver("http://169.254.169.254/hook", b"{}", "t1") is False
