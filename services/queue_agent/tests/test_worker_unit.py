"""The pipelined worker against in-memory fakes: outcomes, failure classes, pipelining, drain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_fakes import PNG, make_harness, task_body, virtual_time

from sdq_contracts.keys import image_key, response_key
from sdq_contracts.messages import TaskState
from sdq_queue_agent.domain.model import RuntimeRequest
from sdq_queue_agent.errors import RuntimeRejectedError, RuntimeUnavailableError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
async def _virtual_time() -> AsyncIterator[None]:
    """Every worker test runs on virtual time: no test waits for a heartbeat, deadline or
    backoff in real time."""
    with virtual_time():
        yield


async def test_completes_a_task_with_objects_status_notification_and_delete() -> None:
    h = make_harness()
    h.queue.send(task_body("t1", content={"prompt": "x", "batch_size": 2}, context={"k": 1}))
    await h.burst()

    keys = {key for (_, key) in h.store.objects}
    assert keys == {image_key("out", "t1", 1), image_key("out", "t1", 2), response_key("out", "t1")}
    assert h.store.objects[("outputs", image_key("out", "t1", 1))] == (PNG, "image/png")
    out = json.loads(h.store.objects[("outputs", response_key("out", "t1"))][0])
    assert out["images"] == ["<output 1>", "<output 2>"]
    [note] = h.publisher.published
    assert (note.status, note.result, note.context) == (TaskState.COMPLETED, True, {"k": 1})
    assert note.image_url == [f"s3://outputs/{image_key('out', 't1', n)}" for n in (1, 2)]
    assert note.trace_id == "1-5759e988-bd862e3fe1be46a994272793"  # the producer's trace
    assert note.timings is not None and {"queue", "fetch", "generate", "upload"} <= set(
        note.timings
    )
    assert h.status.rows["t1"]["status"] == TaskState.COMPLETED
    assert h.status.rows["t1"]["attempts"] == 1
    # A task shorter than a heartbeat period writes no stage and polls nothing: the claim and
    # the final write are its status calls, and the delete goes out in a batch, after the one
    # write that marks the batch's announced rows.
    assert "t1" not in h.status.stages
    assert h.status.calls == {"claim": 1, "complete": 1, "mark_announced": 1}
    assert h.status.mark_batches == [[("t1", "m1")]]
    assert h.status.rows["t1"]["settled_by"] == "m1" and h.status.rows["t1"]["announced"] is True
    assert h.queue.deleted == ["m1"] and not h.queue.messages


async def test_redelivered_completed_task_is_deleted_without_second_notification() -> None:
    h = make_harness()
    h.status.seed("t1", status=TaskState.COMPLETED)
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.publisher.published == []
    assert h.runtime.runs == {}
    assert h.queue.deleted == ["m1"]


async def test_notification_lost_after_completion_is_announced_on_redelivery() -> None:
    h = make_harness()
    h.publisher.fail_next = 1  # SNS down right after the status row says completed
    h.queue.send(task_body("t1"))
    await h.burst(timeout=60)
    assert h.runtime.runs == {"t1": 1}  # not generated again
    [note] = h.publisher.published
    assert note.status is TaskState.COMPLETED and len(note.image_url) == 1
    # Handed back for the window a copy of it would wait for a mark (2 x 5 s + 5 s), not the
    # backoff (0 here): the same message comes back once, settled the task, so announces it.
    assert h.queue.visibility_calls == [("m1", 15)]
    assert h.status.rows["t1"]["settled_by"] == "m1" and h.status.rows["t1"]["announced"] is True
    assert h.queue.deleted == ["m1"]


async def test_permanent_failure_one_failed_notification_no_retry() -> None:
    h = make_harness()

    async def reject(_: RuntimeRequest) -> None:
        raise RuntimeRejectedError("HTTP 422: bad sampler")

    h.runtime.behaviours["t1"] = reject
    h.queue.send(task_body("t1"))
    await h.burst()
    [note] = h.publisher.published
    assert note.status is TaskState.FAILED and note.error is not None
    assert note.error.code == "runtime_rejected" and "bad sampler" in note.error.message
    assert h.runtime.runs == {"t1": 1}
    assert h.queue.deleted == ["m1"] and h.queue.dlq == []
    assert h.status.rows["t1"]["status"] == TaskState.FAILED


async def test_transient_failure_retries_then_completes_with_one_notification() -> None:
    h = make_harness()
    calls = {"n": 0}

    async def flaky(_: RuntimeRequest) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeUnavailableError("runtime died")

    h.runtime.behaviours["t1"] = flaky
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.runs == {"t1": 2}
    assert [n.status for n in h.publisher.published] == [TaskState.COMPLETED]
    assert ("m1", 0) in h.queue.visibility_calls  # backoff (0 s in this config)
    assert h.status.rows["t1"]["attempts"] == 2


async def test_transient_failure_on_last_receive_is_final_and_dead_letters() -> None:
    h = make_harness()

    async def down(_: RuntimeRequest) -> None:
        raise RuntimeUnavailableError("runtime down")

    h.runtime.behaviours["t1"] = down
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.runs == {"t1": 3}
    [note] = h.publisher.published
    assert note.status is TaskState.FAILED and note.error is not None and not note.error.permanent
    assert len(h.queue.dlq) == 1 and h.queue.deleted == []


async def test_backoff_grows_with_receive_count() -> None:
    h = make_harness(backoff_base=10, backoff_max=25)
    assert [h.config.backoff(n) for n in (1, 2, 3)] == [10, 20, 25]


async def test_poison_messages_dead_letter_and_the_next_task_completes() -> None:
    h = make_harness()
    h.queue.send("this is not json")
    h.queue.send({"id": "p1", "runtime": "sdruntime"})  # wrong schema, id recoverable
    h.queue.send(task_body("t1"))
    await h.burst()
    assert sorted(h.queue.dlq) == sorted(
        ['{"id": "p1", "runtime": "sdruntime"}', "this is not json"]
    )
    statuses = {(n.id, n.status) for n in h.publisher.published}
    assert statuses == {("p1", TaskState.FAILED), ("t1", TaskState.COMPLETED)}


async def test_pipeline_prepares_the_next_task_while_generating() -> None:
    h = make_harness()
    h.runtime.generation_s = 0.05
    for i in range(4):
        h.queue.send(task_body(f"t{i}"))
    await h.burst()
    events = h.runtime.events
    # task k+1 is prepared before task k finishes generating
    for i in range(3):
        assert events.index(("prepare", f"t{i + 1}")) < events.index(("done", f"t{i}"))
    assert len(h.publisher.published) == 4


async def test_long_job_is_heartbeated_and_runs_once() -> None:
    h = make_harness(visibility=2)
    h.runtime.generation_s = 2.5
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.runs == {"t1": 1}
    assert h.queue.extends >= 2
    assert len(h.publisher.published) == 1


async def test_deadline_failure_is_permanent_by_default() -> None:
    h = make_harness(task_timeout=0.2, max_receive_count=3)

    async def hang(_: RuntimeRequest) -> None:
        await asyncio.sleep(30)

    h.runtime.behaviours["t1"] = hang
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.interrupted == ["t1"]  # one deadline's worth of GPU, not three
    assert h.runtime.runs == {"t1": 1}
    [note] = h.publisher.published
    assert note.error is not None and note.error.code == "deadline_exceeded"
    assert note.error.permanent is True
    assert h.queue.deleted == ["m1"] and h.queue.dlq == []


async def test_deadline_is_retried_when_the_runtime_config_asks() -> None:
    h = make_harness(task_timeout=0.2, max_receive_count=2, retry_on_deadline=True)

    async def hang(_: RuntimeRequest) -> None:
        await asyncio.sleep(30)

    h.runtime.behaviours["t1"] = hang
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.interrupted == ["t1", "t1"]
    [note] = h.publisher.published
    assert note.error is not None and note.error.code == "deadline_exceeded"
    assert note.error.permanent is False


async def test_duplicate_delivery_while_running_generates_once() -> None:
    """SQS delivers a second copy while the first runs: the copy finds the row leased by the
    first receive, goes back to the queue, and is deleted once the task completed."""
    h = make_harness(visibility=1, prefetch=1)
    body = task_body("t1")
    started = asyncio.Event()

    async def slow(_: RuntimeRequest) -> None:
        started.set()
        await asyncio.sleep(0.3)

    h.runtime.behaviours["t1"] = slow
    h.queue.send(body)
    h.queue.send(body)  # the duplicate
    await h.burst()
    assert h.runtime.runs == {"t1": 1}
    assert [(n.id, n.status) for n in h.publisher.published] == [("t1", TaskState.COMPLETED)]
    assert ("t1", "held_elsewhere") in h.status.claims
    assert sorted(h.queue.deleted) == ["m1", "m2"] and h.queue.dlq == []
    row = h.status.rows["t1"]
    assert row["status"] == TaskState.COMPLETED and row["attempts"] == 1
    assert "holder" not in row and "lease_until" not in row


async def test_transient_failure_shows_waiting_to_retry_with_attempt_and_error() -> None:
    h = make_harness(backoff_base=1, backoff_max=1)
    seen: dict[str, Any] = {}

    async def flaky(_: RuntimeRequest) -> None:
        if h.runtime.runs["t1"] == 1:
            raise RuntimeUnavailableError("runtime died")
        seen.update(h.status.rows["t1"])  # the row as the second attempt runs

    async def snapshot() -> None:
        while h.status.rows.get("t1", {}).get("stage") != "waiting_to_retry":
            await asyncio.sleep(0.01)
        seen["waiting"] = dict(h.status.rows["t1"])

    h.runtime.behaviours["t1"] = flaky
    h.queue.send(task_body("t1"))
    watcher = asyncio.create_task(snapshot())
    await h.burst()
    await watcher
    row = seen["waiting"]
    assert row["status"] == TaskState.RUNNING and row["attempts"] == 1
    assert row["error"]["code"] == "runtime_unavailable" and row["error"]["permanent"] is False
    assert "retry_at" in row and "holder" not in row
    assert seen["attempts"] == 2 and "error" not in seen and "retry_at" not in seen
    assert h.status.rows["t1"]["status"] == TaskState.COMPLETED
    assert "error" not in h.status.rows["t1"] and "retry_at" not in h.status.rows["t1"]


async def test_cancel_requested_while_running_interrupts_and_cancels() -> None:
    h = make_harness(visibility=2, cancel_poll_seconds=0.2)

    async def slow(_: RuntimeRequest) -> None:
        h.status.rows["t1"]["cancel_requested"] = True
        await asyncio.sleep(30)

    h.runtime.behaviours["t1"] = slow
    h.queue.send(task_body("t1"))
    await h.burst()
    assert h.runtime.interrupted == ["t1"]
    [note] = h.publisher.published
    assert note.status is TaskState.CANCELLED
    assert h.status.rows["t1"]["status"] == TaskState.CANCELLED
    assert h.queue.deleted == ["m1"]


async def test_claim_check_content_is_resolved() -> None:
    h = make_harness()
    h.store.objects[("outputs", "_sdq/requests/t1.json")] = (
        b'{"prompt": "big", "batch_size": 1}',
        "",
    )
    body = task_body("t1")
    body.pop("content")
    body["content_ref"] = "s3://outputs/_sdq/requests/t1.json"
    h.queue.send(body)
    await h.burst()
    assert [n.status for n in h.publisher.published] == [TaskState.COMPLETED]


async def test_input_urls_are_fetched_and_inlined() -> None:
    h = make_harness()
    h.fetcher.urls["https://img.example/a.png"] = (PNG, "image/png")
    seen: dict[str, Any] = {}

    async def capture(request: RuntimeRequest) -> None:
        seen.update(request.body)

    h.runtime.behaviours["t1"] = capture
    content = {"init_images": ["https://img.example/a.png"], "prompt": "see http://not.fetched/x"}
    h.queue.send(task_body("t1", tasktype="image-to-image", content=content))
    await h.burst()
    assert h.fetcher.fetched == ["https://img.example/a.png"]
    assert seen["init_images"][0].startswith("iVBORw0KGgo")
    assert seen["prompt"] == "see http://not.fetched/x"


async def test_refused_input_is_a_permanent_failure() -> None:
    h = make_harness()
    content = {"init_images": ["file:///etc/passwd"]}
    h.queue.send(task_body("t1", tasktype="image-to-image", content=content))
    await h.burst()
    [note] = h.publisher.published
    assert note.error is not None and note.error.code == "input_refused"
    assert h.runtime.runs == {}
    assert h.queue.deleted == ["m1"]


async def test_s3_input_only_from_configured_buckets() -> None:
    h = make_harness()
    content = {"init_images": ["s3://someone-elses-bucket/x.png"]}
    h.queue.send(task_body("t1", tasktype="image-to-image", content=content))
    await h.burst()
    [note] = h.publisher.published
    assert note.error is not None and "output or model bucket" in note.error.message


async def test_webhook_gets_the_notification_body() -> None:
    h = make_harness()
    h.queue.send(task_body("t1", callback_url="https://hooks.example/cb"))
    await h.burst()
    [(url, body)] = h.webhooks.calls
    assert url == "https://hooks.example/cb"
    assert json.loads(body)["status"] == "completed"


async def test_stop_hands_back_prefetched_and_finishes_in_flight() -> None:
    h = make_harness(drain_seconds=5.0)
    h.runtime.generation_s = 0.3
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    worker = h.worker()
    run = asyncio.create_task(worker.run())
    async with asyncio.timeout(5):
        while (
            ("run", "t1") not in h.runtime.events or len(h.queue.messages) < 2 or worker.holding < 2
        ):
            await asyncio.sleep(0.01)
    worker.stop()
    async with asyncio.timeout(5):
        await run
    assert [n.id for n in h.publisher.published] == ["t1"]
    assert ("m2", 0) in h.queue.visibility_calls  # prefetched t2 handed back at once
    assert list(h.queue.messages) == ["m2"]


async def test_stop_past_drain_budget_interrupts_and_hands_back() -> None:
    h = make_harness(drain_seconds=0.1)
    h.runtime.generation_s = 10
    h.queue.send(task_body("t1"))
    worker = h.worker()
    run = asyncio.create_task(worker.run())
    async with asyncio.timeout(5):
        while ("run", "t1") not in h.runtime.events:
            await asyncio.sleep(0.01)
    worker.stop()
    async with asyncio.timeout(5):
        await run
    assert h.runtime.interrupted == ["t1"]
    assert h.publisher.published == []
    assert ("m1", 0) in h.queue.visibility_calls


async def test_runtime_clean_up_runs_once_the_outputs_are_in_s3() -> None:
    """A runtime that keeps its outputs (InvokeAI) removes them after upload, never before; a
    failing clean-up changes nothing about the task's outcome."""
    from sdq_queue_agent.domain.model import OutputFile, RuntimeResult

    h = make_harness()
    seen: list[set[str]] = []

    def result_with(cleanup_fails: bool) -> Any:
        async def behaviour(request: RuntimeRequest) -> RuntimeResult:
            async def after_upload() -> None:
                seen.append({key for (_, key) in h.store.objects if request.task_id in key})
                if cleanup_fails:
                    raise RuntimeUnavailableError("runtime gone during clean-up")

            files = (OutputFile(PNG, "image/png", "png"),)
            return RuntimeResult(files=files, after_upload=after_upload)

        return behaviour

    h.runtime.behaviours["t1"] = result_with(False)
    h.runtime.behaviours["t2"] = result_with(True)
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    await h.burst()
    assert seen == [
        {image_key("out", "t1", 1), response_key("out", "t1")},
        {image_key("out", "t2", 1), response_key("out", "t2")},
    ]
    assert [n.status for n in h.publisher.published] == [TaskState.COMPLETED] * 2
    assert sorted(h.queue.deleted) == ["m1", "m2"]


async def test_a_prefetched_task_cancelled_while_waiting_never_runs() -> None:
    """Its lease renew (a third of the visibility) carries the cancel request: the task is
    skipped when its turn comes, with one cancelled notification and no cancel polls."""
    h = make_harness(visibility=30, cancel_poll_seconds=5, prefetch=1, task_timeout=60)

    async def long(_: RuntimeRequest) -> None:
        h.status.rows["b"]["cancel_requested"] = True  # the API's cancel of the prefetched one
        # 15 s: between b's renews at 10 s and 20 s (at 20 s the skip and the renew would tie)
        await asyncio.sleep(15)

    h.runtime.behaviours["a"] = long
    h.queue.send(task_body("a"))
    h.queue.send(task_body("b"))
    await h.burst(timeout=60)
    assert h.runtime.runs == {"a": 1}
    assert sorted((n.id, n.status) for n in h.publisher.published) == [
        ("a", TaskState.COMPLETED),
        ("b", TaskState.CANCELLED),
    ]
    assert h.status.stages["b"] == ["prefetched"]
    # a: 15 s of generation, polled every 5 s (the renew at 10 s answers too)
    assert h.status.calls["cancel_requested"] <= 3
