"""Issue 18: the agent's AWS clients keep their connections alive. The agent's own clients
(``open_clients``, as deployed) and adapters talk to a 127.0.0.1 server that answers like SQS,
DynamoDB, S3 and SNS and keeps connections open (as AWS does); the server counts the TCP
connections it accepted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from aiohttp import web

from sdq_contracts.messages import ResultNotification, TaskState
from sdq_queue_agent.app import aws_adapters, open_clients
from sdq_queue_agent.settings import load_settings

pytestmark = pytest.mark.integration

CALLS = 25
_SNS_OK = (
    '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
    "<MessageId>m</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId>"
    "</ResponseMetadata></PublishResponse>"
)


class AwsLike:
    """Answers every call with an empty success, as the service's protocol spells it."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername")[:2])
        target = request.headers.get("X-Amz-Target", "")
        if target:  # SQS and DynamoDB: JSON protocol
            return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")
        if request.method == "PUT":  # S3 PutObject
            return web.Response(headers={"ETag": '"0"'})
        return web.Response(text=_SNS_OK, content_type="text/xml")  # SNS Publish

    async def __aenter__(self) -> AwsLike:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def aws_like() -> AsyncIterator[AwsLike]:
    async with AwsLike() as server:
        yield server


async def test_every_client_reuses_its_connection(
    aws_like: AwsLike, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    settings = load_settings(
        {
            "SDQ_RUNTIME_NAME": "sdruntime",
            "SDQ_RUNTIME_TYPE": "sdwebui",
            "SDQ_RUNTIME_URL": "http://127.0.0.1:1",
            "SDQ_QUEUE_URL": f"{aws_like.url}/123456789012/q",
            "SDQ_RESULT_TOPIC_ARN": "arn:aws:sns:us-west-2:123456789012:results",
            "SDQ_STATUS_TABLE": "status",
            "SDQ_OUTPUT_BUCKET": "outputs",
            "AWS_ENDPOINT_URL": aws_like.url,
            "AWS_REGION": "us-west-2",
        }
    )
    note = ResultNotification(
        id="t1",
        runtime="sdruntime",
        result=True,
        status=TaskState.COMPLETED,
        output_location="s3://outputs/out/t1",
    )
    async with AsyncExitStack() as stack:
        aws = aws_adapters(settings, await open_clients(stack, settings))
        for _ in range(CALLS):
            assert await aws.queue.receive(10, 0, 30) == []
            assert await aws.status.cancel_requested("t1") is False
            await aws.store.put("outputs", "out/t1/1.png", b"png", "image/png")
            await aws.publisher.publish(note)
        assert aws_like.requests == 4 * CALLS
        assert len(aws_like.peers) == 4  # one connection per service, kept alive
        # concurrent calls share a small pool (never one connection per call)
        await asyncio.gather(
            *(aws.status.cancel_requested(f"t{i}") for i in range(8)),
            *(aws.store.put("outputs", f"k{i}", b"x", "image/png") for i in range(8)),
        )
    assert aws_like.requests == 4 * CALLS + 16
    # at most one more connection per concurrent call, and none for the sequential ones
    assert len(aws_like.peers) <= 4 + 2 * 8, len(aws_like.peers)
