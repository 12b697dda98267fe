"""The local API Gateway stand-in: keys, throttle, proxy events — and no key in any log."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sdq_api_validator.app import build_api
from sdq_api_validator.settings import Settings
from sdq_contracts import load_config
from sdq_contracts.config import Throttle
from sdq_local.front_door import FrontDoor, TokenBucket
from sdq_local.provision import provision
from sdq_observability.logs import configure_logging

KEY = "sdq-local-9d8e7f6a5b4c3d2e1f"


class Recorder:
    def __init__(self):
        self.events = []

    def handle(self, event, trace_id=None):
        self.events.append(event)
        return {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json"},
            "body": '{"ok":true}',
        }


class FrozenClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


async def _serve(door):
    server = TestServer(door.app(), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.unit
def test_token_bucket_refills_at_the_rate():
    clock = FrozenClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.take() == 0.0


@pytest.mark.unit
async def test_keys_are_required_and_checked():
    recorder = Recorder()
    server = await _serve(FrontDoor(recorder, [KEY], Throttle(), 1024 * 1024))
    url = f"http://127.0.0.1:{server.port}/v1alpha2"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(url, json={}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "missing_api_key"
        async with http.post(url, json={}, headers={"x-api-key": "wrong"}) as r:
            assert r.status == 403
        async with http.post(url, json={"a": 1}, headers={"x-api-key": KEY}) as r:
            assert r.status == 202
        async with http.get(
            f"http://127.0.0.1:{server.port}/v1alpha2/tasks/abc", headers={"x-api-key": KEY}
        ) as r:
            assert r.status == 202
        async with http.get(
            f"http://127.0.0.1:{server.port}/elsewhere", headers={"x-api-key": KEY}
        ) as r:
            assert r.status == 404
    await server.close()
    post, get = recorder.events
    assert (post["resource"], post["httpMethod"], json.loads(post["body"])) == (
        "/v1alpha2",
        "POST",
        {"a": 1},
    )
    assert (get["resource"], get["pathParameters"]) == ("/v1alpha2/tasks/{id}", {"id": "abc"})


@pytest.mark.unit
async def test_a_burst_of_80_gets_50_through_and_429_for_the_rest():
    recorder = Recorder()
    door = FrontDoor(
        recorder, [KEY], Throttle(rate_limit=30, burst_limit=50), 1024 * 1024, clock=FrozenClock()
    )
    server = await _serve(door)
    url = f"http://127.0.0.1:{server.port}/v1alpha2"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

        async def one():
            async with http.post(url, json={}, headers={"x-api-key": KEY}) as r:
                return r.status, r.headers.get("Retry-After")

        results = await asyncio.gather(*(one() for _ in range(80)))
    await server.close()
    statuses = [s for s, _ in results]
    assert statuses.count(202) == 50
    assert statuses.count(429) == 30
    assert all(retry == "1" for s, retry in results if s == 429)
    assert len(recorder.events) == 50


@pytest.mark.integration
async def test_the_api_key_never_reaches_a_log(aws, repo_root, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    structured = io.StringIO()
    configure_logging("DEBUG", stream=structured)
    cfg = load_config(repo_root / "config.yaml")
    p = provision(cfg)
    api = build_api(
        Settings(
            runtimes=cfg.runtimes,
            input_topic_arn=p.input_topic_arn,
            status_table=p.status_table,
            output_bucket=p.output_bucket,
        )
    )
    server = await _serve(FrontDoor(api, [KEY], Throttle(), cfg.api.max_body_bytes))
    base = f"http://127.0.0.1:{server.port}"
    body = json.loads((repo_root / "tests/examples/v1alpha2-text-to-image.json").read_text())
    headers = {"x-api-key": KEY, "Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        for method, path, payload in [
            ("POST", "/v1alpha2", body),
            ("POST", "/v1alpha2", {"task": {"metadata": {"runtime": "nope"}}}),
            ("GET", "/v1alpha2/tasks/example-t2i", None),
            ("DELETE", "/v1alpha2/tasks/missing", None),
        ]:
            async with http.request(method, base + path, json=payload, headers=headers) as r:
                assert r.status < 500
    await server.close()
    configure_logging("INFO")  # back to stdout for the tests after this one
    out = capsys.readouterr()
    logged = structured.getvalue() + out.out + out.err + caplog.text
    assert "request_handled" in logged  # the handler did log these requests ...
    assert KEY not in logged  # ... and never the key
