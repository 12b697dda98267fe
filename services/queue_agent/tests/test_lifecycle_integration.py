"""Runtime crashes, SIGTERM drain, health endpoints and secret-free logs, end to end against the
moto server and the runtime emulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_stack import Stack, task
from aiohttp import web

from sdq_queue_agent.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from sdq_runtime_emulator import EmulatorProcess, running_emulator
from sdq_runtime_emulator.harness import free_port

pytestmark = pytest.mark.integration


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_runtime_exiting_mid_task_is_retried_and_completes_once(stack: Stack) -> None:
    port = free_port()
    first = await asyncio.to_thread(
        EmulatorProcess(port=port, exit_next=1, generation_latency_s=0.3).start
    )
    second: EmulatorProcess | None = None
    try:
        stack.submit(task("crash"))
        agent = asyncio.create_task(stack.run_burst("sdruntime", first.url, timeout=60))
        await _until(lambda: first.returncode is not None, 30, "the emulator to exit")
        second = await asyncio.to_thread(EmulatorProcess(port=port, generation_latency_s=0.1).start)
        assert await agent == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    notes = await asyncio.to_thread(stack.notifications, 1)
    assert [(n["id"], n["status"]) for n in notes] == [("crash", "completed")]
    assert stack.status("crash").attempts == 2


async def test_sigterm_with_tasks_at_the_runtime_completes_them_once_and_hands_back_prefetched(
    stack: Stack, tmp_path: Path
) -> None:
    http_port = free_port()
    drain_file = tmp_path / "run" / "drained"
    async with running_emulator(generation_latency_s=2.0) as emu:
        env = os.environ | stack.env(
            "sdruntime", emu.url, http_port=http_port, drain_file=drain_file, drain_seconds=30
        )
        for name in ("task-a", "task-b", "task-c"):
            stack.submit(task(name))
        log_path = tmp_path / "agent.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sdq_queue_agent", env=env, stdout=log, stderr=log
            )
        try:
            stats = emu.state.stats.sdwebui
            await _until(lambda: stats.generations_started == 1, 30, "the first generation")
            base = f"http://127.0.0.1:{http_port}"
            ready, drained = await asyncio.gather(
                asyncio.to_thread(_get, f"{base}/readyz"),
                asyncio.to_thread(_get, f"{base}/drained"),
            )
            assert ready[0] == 200 and drained[0] == 503
            metrics = (await asyncio.to_thread(_get, f"{base}/metrics"))[1]
            assert "sdq_agent_runtime_busy_ratio" in metrics and "sdq_agent_in_flight" in metrics
            await _until(
                lambda: log_path.read_text().count('"task_received"') == 3, 10, "the prefetch"
            )
            # One generates, one waits at the runtime behind it (look-ahead), one is prefetched.
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(40):
                assert await proc.wait() == 0, log_path.read_text()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        # The drain finishes what the runtime has (its request for the queued one is sent).
        assert stats.generations_started == 2
    assert drain_file.read_text() == "drained\n"
    # SQS does not keep order: whichever two reached the runtime complete, the third was only
    # prefetched.
    notes = await asyncio.to_thread(stack.notifications, 2)
    assert [n["status"] for n in notes] == ["completed", "completed"]
    [other] = {"task-a", "task-b", "task-c"} - {n["id"] for n in notes}
    assert stack.status(other).status.value != "completed"
    sqs = stack.client("sqs")
    attrs = sqs.get_queue_attributes(
        QueueUrl=stack.prov.queue_urls["sdruntime"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"  # the prefetched one, handed back at once


async def test_logs_never_carry_secrets_and_webhook_is_signed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "whsec-SUPER-secret-4711"
    hooks: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        hooks.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/gone.png", missing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    signed_input = f"{base}/gone.png?X-Amz-Signature=sigvalue-abc&X-Amz-Credential=cred-xyz"
    try:
        stack.submit(task("hooked", callback_url=f"{base}/hook?token=hooktoken-123"))
        stack.submit(
            task("signed-input", tasktype="image-to-image", content={"init_images": [signed_input]})
        )
        async with running_emulator() as emu:
            assert await stack.run_burst("sdruntime", emu.url, webhook_secret=secret) == 0
    finally:
        await runner.cleanup()
    out = capsys.readouterr().out
    assert '"task_id": "hooked"' in out and "gone.png" in out
    for leaked in (secret, "sigvalue-abc", "cred-xyz", "hooktoken-123"):
        assert leaked not in out
    [(headers, body)] = hooks
    assert verify(secret.encode(), int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["id"] == "hooked"
    notes = {n["id"]: n for n in stack.notifications(2)}
    assert notes["signed-input"]["error"]["code"] == "input_refused"
    assert "sigvalue-abc" not in notes["signed-input"]["error"]["message"]
