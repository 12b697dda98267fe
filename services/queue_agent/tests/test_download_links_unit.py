"""Download links in the agent's notifications, against in-memory fakes: every output gets one
(also when a redelivery announces a row written before), the webhook gets the same, and a signer
that cannot sign never fails a task that is done."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from agent_fakes import Harness, LoopClock, make_harness, task_body, virtual_time

from sdq_contracts.messages import ResultNotification, TaskState
from sdq_queue_agent.domain.worker import Worker
from sdq_queue_agent.errors import AwsError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
async def _virtual_time() -> AsyncIterator[None]:
    with virtual_time():
        yield


class FakeSigner:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.fail = fail

    async def sign(self, bucket: str, key: str, seconds: int) -> str:
        if self.fail:
            raise AwsError("cannot sign a download link: NoCredentialsError")
        self.calls.append((bucket, key, seconds))
        return f"https://signed/{bucket}/{key}?X-Amz-Expires={seconds}&n={len(self.calls)}"


async def _burst(h: Harness, signer: FakeSigner) -> None:
    worker = Worker(
        h.config,
        queue=h.queue,
        store=h.store,
        publisher=h.publisher,
        status=h.status,
        fetcher=h.fetcher,
        webhooks=h.webhooks,
        runtime=h.runtime,
        metrics=h.metrics,
        links=signer,
        clock=LoopClock(),
    )
    await worker.run(burst=True)


async def test_every_output_and_the_webhook_get_a_link_with_the_configured_lifetime() -> None:
    h = make_harness(download_link_seconds=600)
    signer = FakeSigner()
    h.queue.send(
        task_body("t1", content={"prompt": "x", "batch_size": 2}, callback_url="http://hook/x")
    )
    await _burst(h, signer)
    [note] = h.publisher.published
    assert [f.url for f in note.files] == note.image_url and len(note.files) == 2
    assert [f.download_url for f in note.files] == [
        f"https://signed/outputs/{u.split('/', 3)[3]}?X-Amz-Expires=600&n={n}"
        for n, u in enumerate(note.image_url, start=1)
    ]
    for file in note.files:
        assert file.download_expires_at is not None
        assert file.kind.value == "image" and file.content_type == "image/png"
    [(_, body)] = h.webhooks.calls
    assert ResultNotification.model_validate(json.loads(body)).files == note.files
    assert "signed" not in json.dumps(h.status.rows["t1"], default=str)


async def test_a_redelivery_announcing_an_old_row_signs_links_for_its_outputs() -> None:
    h = make_harness()
    h.publisher.fail_next = 1  # SNS down right after the status row says completed
    h.queue.send(task_body("t1"))
    signer = FakeSigner()
    await _burst(h, signer)
    [note] = h.publisher.published
    assert note.status is TaskState.COMPLETED
    # The first (failed) publish signed once, the announcement of the row signed again.
    assert [f.download_url for f in note.files] == [
        f"https://signed/outputs/{note.image_url[0].split('/', 3)[3]}?X-Amz-Expires=3600&n=2"
    ]


async def test_a_signer_that_cannot_sign_still_completes_and_announces_the_task() -> None:
    h = make_harness()
    h.queue.send(task_body("t1"))
    await _burst(h, FakeSigner(fail=True))
    [note] = h.publisher.published
    assert note.status is TaskState.COMPLETED and len(note.files) == 1
    assert note.files[0].download_url is None and note.files[0].url == note.image_url[0]
    assert h.status.rows["t1"]["status"] == TaskState.COMPLETED
    assert h.queue.deleted == ["m1"]
