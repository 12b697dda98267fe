"""Preparation of one received message: parse, resolve the claim check, claim the status row,
fetch the inputs and stage them on the runtime. Decides nothing about the message's fate: it
returns a ready job or the claim that stops it, and raises classified failures."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sdq_contracts.keys import output_location, parse_s3_uri
from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.domain.clock import Clock
from sdq_queue_agent.domain.held import Held
from sdq_queue_agent.domain.inputs import check_s3_input, classify, decode_data_uri
from sdq_queue_agent.domain.model import (
    Claim,
    ClaimOutcome,
    FetchedInput,
    InputRef,
    NewRow,
    ParsedTask,
    RuntimeRequest,
)
from sdq_queue_agent.domain.parsing import parse_task
from sdq_queue_agent.domain.policy import WorkerConfig, new_row
from sdq_queue_agent.domain.ports import InputFetcher, Metrics, ObjectStore, Runtime, StatusStore
from sdq_queue_agent.errors import (
    InputRefusedError,
    InvalidTaskError,
    PermanentTaskError,
    TaskCancelled,
    TaskFailure,
)

MAX_CLAIM_CHECK_BYTES = 64 * 1024 * 1024


@dataclass
class Job:
    """A prepared task, ready for the runtime."""

    held: Held
    parsed: ParsedTask
    request: RuntimeRequest
    timings: dict[str, float]

    @property
    def task(self) -> TaskMessage:
        return self.parsed.task


@dataclass(frozen=True)
class NotClaimed:
    """The status row refused the claim: the task ended, or another receive holds it."""

    task: TaskMessage
    claim: Claim


class Preparer:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        store: ObjectStore,
        status: StatusStore,
        fetcher: InputFetcher,
        runtime: Runtime,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._cfg = config
        self._store = store
        self._status = status
        self._fetcher = fetcher
        self._runtime = runtime
        self._metrics = metrics
        self._clock = clock

    def output_location(self, task: TaskMessage) -> str:
        return output_location(self._cfg.output_bucket, task.prefix, task.id)

    def new_row(self, task: TaskMessage) -> NewRow:
        return new_row(task, self._cfg, self._clock.now())

    async def prepare(self, held: Held) -> Job | NotClaimed:
        """Raises PoisonMessage, TaskCancelled (cancel asked before it ran) or a TaskFailure."""
        started = self._clock.monotonic()
        task = parse_task(held.message.body)
        held.task = task
        held.log = held.log.bind(task_id=task.id, runtime=task.runtime)
        held.span.set_attribute("sdq.task_id", task.id)
        held.span.set_attribute("sdq.runtime", task.runtime)
        queue_wait = max((held.received_wall - task.submitted_at).total_seconds(), 0.0)
        self._metrics.queue_wait_seconds.observe(queue_wait)
        if task.runtime != self._cfg.runtime_name:
            raise InvalidTaskError(
                f"task is for runtime {task.runtime!r}, this agent runs {self._cfg.runtime_name!r}"
            )
        if task.content is not None:
            content = task.content
        else:
            with held.stage("claim_check"):
                content = await self._claim_check(task)
        request = self._runtime.prepare(task, content)
        now = self._clock.now()
        with held.stage("status.claim"):
            claim = await self._status.claim(
                task.id,
                self.new_row(task),
                now,
                held.holder,
                int(now.timestamp() + self._cfg.lease_seconds),
            )
        held.log.debug("claimed", outcome=claim.outcome.value)
        held.leased = claim.outcome is ClaimOutcome.CLAIMED
        if claim.outcome is ClaimOutcome.CANCEL_REQUESTED:
            raise TaskCancelled
        if claim.outcome is not ClaimOutcome.CLAIMED:
            return NotClaimed(task, claim)
        held.log.info(
            "task_received", tasktype=task.tasktype.value, attempt=held.message.receive_count
        )
        fetch_started = self._clock.monotonic()
        if request.inputs:
            with held.stage("fetch_inputs"):
                fetched = await self._fetch_inputs(request.inputs)
                request = await self._runtime.stage_inputs(request, fetched)
        fetch_s = self._clock.monotonic() - fetch_started
        self._metrics.stage("fetch", fetch_s)
        timings = {"queue": round(queue_wait, 3), "fetch": round(fetch_s, 3)}
        timings["prepare"] = self._clock.monotonic() - started
        self._metrics.stage("prepare", timings["prepare"])
        return Job(held=held, parsed=ParsedTask(task, content), request=request, timings=timings)

    async def _claim_check(self, task: TaskMessage) -> dict[str, Any]:
        if task.content_ref is None:
            raise InvalidTaskError("the task has neither content nor a claim check")
        try:
            bucket, key = parse_s3_uri(task.content_ref)
        except ValueError as exc:
            raise InvalidTaskError(str(exc)) from None
        if bucket != self._cfg.output_bucket:
            raise InvalidTaskError(f"claim check must live in the output bucket, not {bucket!r}")
        data, _ = await self._store.get(bucket, key, MAX_CLAIM_CHECK_BYTES)
        try:
            content = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise InvalidTaskError("claim-checked content is not JSON") from None
        if not isinstance(content, dict):
            raise InvalidTaskError("claim-checked content is not a JSON object")
        return content

    async def _fetch_inputs(self, refs: tuple[InputRef, ...]) -> list[FetchedInput]:
        async def one(ref: InputRef) -> FetchedInput:
            kind = classify(ref.url)
            if kind == "s3":
                bucket, key = check_s3_input(ref.url, self._cfg.input_buckets)
                data, content_type = await self._store.get(bucket, key, self._cfg.max_input_bytes)
            elif kind == "data":
                data, content_type = decode_data_uri(ref.url, self._cfg.max_input_bytes)
            else:
                data, content_type = await self._fetcher.fetch_url(ref.url)
            return FetchedInput(ref, data, content_type)

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(ref)) for ref in refs]
        except ExceptionGroup as group:
            raise _first_failure(group) from None
        return [t.result() for t in tasks]


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling error of a failed fetch group: permanent first, then transient."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for kind in (PermanentTaskError, TaskFailure):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0] if flat else InputRefusedError("input fetch failed")
