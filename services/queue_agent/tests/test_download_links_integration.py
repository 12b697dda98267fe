"""Download links in the notification: the agent against the moto server and the SD WebUI
emulator. Each output gets a pre-signed GET link that fetches its bytes with no credentials,
the webhook body carries the same links, the status row holds none, and no log line shows one."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from agent_stack import Stack, task
from aiohttp import web

from sdq_contracts.keys import parse_s3_uri
from sdq_runtime_emulator import running_emulator

pytestmark = pytest.mark.integration


def _get(url: str) -> bytes:
    """A plain HTTP GET, no AWS credentials anywhere (the link is the only authority)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


async def test_notification_and_webhook_carry_working_links_that_never_reach_logs_or_rows(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    content = {"prompt": "x", "width": 64, "height": 64, "batch_size": 2}
    try:
        stack.submit(task("linked", content=content, callback_url=f"{base}/hook"))
        before = datetime.now(UTC)
        async with running_emulator() as emu:
            assert (
                await stack.run_burst(
                    "sdruntime", emu.url, download_link_seconds=900, log_level="DEBUG"
                )
                == 0
            )
        after = datetime.now(UTC)
    finally:
        await runner.cleanup()
    logs = capsys.readouterr().out

    [note] = stack.notifications(1)
    assert note["status"] == "completed"
    files = note["files"]
    assert [f["url"] for f in files] == note["image_url"] and len(files) == 2
    objects = stack.objects("itest/linked/")
    links = []
    for file in files:
        link = file["download_url"]
        links.append(link)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        assert query["X-Amz-Expires"] == ["900"]
        assert "X-Amz-Signature" in query
        assert link.startswith(stack.endpoint)  # the moto server on 127.0.0.1
        expires = datetime.fromisoformat(file["download_expires_at"])
        assert before + timedelta(seconds=900) <= expires <= after + timedelta(seconds=900)
        assert file["kind"] == "image" and file["content_type"] == "image/png"
        _, key = parse_s3_uri(file["url"])
        assert _get(link) == objects[key]

    # The webhook body is the published notification: the same links.
    [body] = hooks
    assert [f["download_url"] for f in json.loads(body)["files"]] == links

    # The status row is link-free.
    raw = stack.client("dynamodb").get_item(
        TableName=stack.prov.status_table, Key={"id": {"S": "linked"}}
    )["Item"]
    assert "X-Amz-" not in json.dumps(raw) and "download_url" not in json.dumps(raw)

    # No log line shows a link or its signature.
    assert '"task_id": "linked"' in logs
    assert "X-Amz-Signature" not in logs
    for link in links:
        signature = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["X-Amz-Signature"][0]
        assert link not in logs and signature not in logs


async def test_link_lifetime_is_the_configured_setting(stack: Stack) -> None:
    """The link is SigV4 (X-Amz-Expires is what S3 enforces) with the configured lifetime, and
    download_expires_at says when it ends."""
    stack.submit(task("short", content={"prompt": "x", "width": 64, "height": 64}))
    async with running_emulator() as emu:
        assert await stack.run_burst("sdruntime", emu.url, download_link_seconds=60) == 0
    [note] = await asyncio.to_thread(stack.notifications, 1)
    [file] = note["files"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(file["download_url"]).query)
    assert query["X-Amz-Expires"] == ["60"]
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert datetime.fromisoformat(file["download_expires_at"]) - signed <= timedelta(seconds=61)
