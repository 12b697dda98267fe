"""The delivery policy: every way a held message ends (complete, fail, poison, cancel, release,
back off, skip, announce). Each outcome records the status row, publishes at most the one final
notification, settles the message with SQS and drops it from the registry.

Exactly one notification per task: a final status write records the MessageId of the message
being handled (``settled_by``) and only a successful write publishes; the message is deleted
(in a batch, which first marks the row ``announced``) only after the publish. A message that
finds its task ended announces it again only if it is that same message and the row carries no
mark (its settle was cut short; a copy of it arriving while the original may still be on its
way to the mark waits), see ``sdq_contracts.status``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import Any

import structlog

from sdq_contracts import status as row_rules
from sdq_contracts.keys import image_key, output_location, parse_s3_uri, response_key
from sdq_contracts.links import output_files, with_link
from sdq_contracts.messages import (
    OutputObject,
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_contracts.requests import OutputOptions
from sdq_queue_agent.domain import image_format
from sdq_queue_agent.domain.clock import Clock
from sdq_queue_agent.domain.deletes import BatchDeleter
from sdq_queue_agent.domain.held import Held, HeldRegistry
from sdq_queue_agent.domain.model import ClaimOutcome, NewRow, OutputFile, RuntimeResult
from sdq_queue_agent.domain.output_media import HEAD_BYTES, Probe, describe, image_header, kind_of
from sdq_queue_agent.domain.parsing import PoisonMessage
from sdq_queue_agent.domain.policy import MAX_VISIBILITY, Verdict, WorkerConfig, decide, new_row
from sdq_queue_agent.domain.ports import (
    LinkSigner,
    Metrics,
    ObjectStore,
    ResultPublisher,
    StatusStore,
    TaskQueue,
    WebhookSender,
)
from sdq_queue_agent.domain.preparation import Job, NotClaimed
from sdq_queue_agent.domain.ssrf import redact_url
from sdq_queue_agent.errors import OutputConversionError, TaskFailure

_log = structlog.get_logger("sdq_queue_agent")

Spawn = Callable[[Coroutine[Any, Any, None]], None]
# Outputs uploading side by side (each streaming one holds up to two parts in memory).
UPLOADS_AT_ONCE = 4
# A still image the task wants converted is read whole first; larger than this it fails.
MAX_CONVERT_BYTES = 256 * 1024 * 1024


async def _read_bounded(file: OutputFile) -> tuple[bytes, bool]:
    """A runtime's output read whole for a format conversion: ``(bytes, True)``, or its first
    bytes and False when it is larger than :data:`MAX_CONVERT_BYTES`."""
    if file.data is not None:
        return file.data, True
    buf = bytearray()
    if file.source is not None:
        async with aclosing(file.source()) as chunks:
            async for chunk in chunks:
                buf += chunk
                if len(buf) > MAX_CONVERT_BYTES:
                    return bytes(buf[:HEAD_BYTES]), False
    return bytes(buf), True


async def _probed(file: OutputFile, probe: Probe) -> AsyncGenerator[bytes, None]:
    """The output's chunks, each shown to ``probe`` on the way to S3."""
    if file.source is None:
        return
    async with aclosing(file.source()) as chunks:
        async for chunk in chunks:
            probe.feed(chunk)
            yield chunk


class Outcomes:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        registry: HeldRegistry,
        queue: TaskQueue,
        store: ObjectStore,
        publisher: ResultPublisher,
        status: StatusStore,
        webhooks: WebhookSender,
        metrics: Metrics,
        clock: Clock,
        spawn: Spawn,
        deletes: BatchDeleter,
        links: LinkSigner | None = None,
    ) -> None:
        self._cfg = config
        self._deletes = deletes
        self._held = registry
        self._queue = queue
        self._store = store
        self._publisher = publisher
        self._status = status
        self._webhooks = webhooks
        self._metrics = metrics
        self._clock = clock
        self._links = links
        # Background work beside the outcome (webhooks, stage records) runs in the worker's
        # task group.
        self._spawn = spawn

    def output_location(self, task: TaskMessage) -> str:
        return output_location(self._cfg.output_bucket, task.prefix, task.id)

    def new_row(self, task: TaskMessage) -> NewRow:
        return new_row(task, self._cfg, self._clock.now())

    # ----------------------------------------------------------------------- complete

    async def complete(self, job: Job, result: RuntimeResult) -> None:
        held, task = job.held, job.task
        try:
            started = self._clock.monotonic()
            try:
                with held.stage("upload"):
                    files = await self._upload(task, result)
            except asyncio.CancelledError:
                raise  # shutting down: the files stay for the task's next run to replace
            except BaseException:
                # Stored or not, the runtime's copy is done with (a failed task generates again).
                self._clean_up(held, result)
                raise
            self._clean_up(held, result)
            urls = [f.url for f in files]
            job.timings["upload"] = round(self._clock.monotonic() - started, 3)
            self._metrics.stage("upload", job.timings["upload"])
            started = self._clock.monotonic()
            with held.stage("status.update"):
                announced = await self._status.complete(
                    task.id,
                    held.holder,
                    urls,
                    self._clock.now(),
                    settled_by=held.message.message_id,
                    files=files,
                )
        except TaskFailure as failure:
            await self.fail(held, failure)
            return
        held.leased = False
        notification = None
        if announced:
            job.timings["total"] = round((self._clock.now() - task.submitted_at).total_seconds(), 3)
            notification = self._notification(
                task, held, TaskState.COMPLETED, files=files, timings=job.timings
            )
            with held.stage("notify"):
                notification = await self._announce(held, notification)
            if notification is None:
                return
        self._metrics.stage("notify", self._clock.monotonic() - started)
        held.log.info("task_completed", outputs=len(urls), timings=job.timings, announced=announced)
        self._metrics.outcome("completed" if announced else "cancelled")
        if notification is not None and task.callback_url:
            self._spawn(self._webhook(task, task.callback_url, notification, held))
        # Only after the publish (it waits for its batch, which marks the row announced).
        await self._delete(held, announced=task.id if notification is not None else None)
        await self._held.drop(held)

    async def _announce(
        self, held: Held, notification: ResultNotification
    ) -> ResultNotification | None:
        """Publish after this message's final write; the notification as published. When the
        publish fails the message is handed back: it comes back after the backoff (at least
        the window in which a copy of it waits for a mark, so it announces on its first return)
        and, being the message that settled the task, announces it then (None: handed back and
        dropped)."""
        try:
            return await self._publish(notification)
        except TaskFailure as exc:
            window = math.ceil(self._cfg.announce_window)
            delay = min(max(self._cfg.backoff(held.message.receive_count), window), MAX_VISIBILITY)
            held.log.warning(
                "could_not_publish_the_final_notification_retrying_with_the_message",
                cause=str(exc),
                retry_in_s=delay,
            )
            with contextlib.suppress(TaskFailure):
                await self._queue.set_visibility(held.message, delay)
            self._metrics.outcome("retried")
            await self._held.drop(held)
            return None

    async def _delete(self, held: Held, *, announced: str | None) -> None:
        """Delete in a batch (``announced``: the task this message announced, marked with the
        batch); a message that could not be deleted reappears, and its redelivery finds the row
        settled (announcing again only if it settled it and the mark is missing)."""
        try:
            with held.within():
                await self._deletes.delete(held.message, announced=announced)
        except TaskFailure as exc:
            held.log.warning(
                "could_not_delete_the_settled_message_it_will_reappear", cause=str(exc)
            )

    def _clean_up(self, held: Held, result: RuntimeResult) -> None:
        if result.after_upload is not None:
            self._spawn(self._after_upload(held, result.after_upload))

    async def _after_upload(self, held: Held, cleanup: Callable[[], Awaitable[None]]) -> None:
        """The runtime's clean-up of outputs already in S3; a failure only leaves files behind."""
        try:
            await cleanup()
        except TaskFailure as exc:
            held.log.warning("runtime_clean_up_after_upload_failed", error=str(exc))

    async def _upload(self, task: TaskMessage, result: RuntimeResult) -> list[OutputObject]:
        """Every output under its deterministic key (at most :data:`UPLOADS_AT_ONCE` at a time,
        so large ones streaming side by side stay bounded in memory), plus the ``.out``."""
        bucket = self._cfg.output_bucket
        out_key = response_key(task.prefix, task.id)
        out_body = json.dumps(result.response, separators=(",", ":"), default=str).encode("utf-8")
        gate = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def one(n: int, file: OutputFile) -> OutputObject:
            async with gate:
                return await self._store_output(task, n, file)

        try:
            async with asyncio.TaskGroup() as tg:
                stored = [
                    tg.create_task(one(n, file)) for n, file in enumerate(result.files, start=1)
                ]
                tg.create_task(self._store.put(bucket, out_key, out_body, "application/json"))
        except BaseExceptionGroup as group:
            # The classified failure (a permanent one first: retrying would not help) decides.
            failures = [e for e in group.exceptions if isinstance(e, TaskFailure)]
            failures.sort(key=lambda e: not e.permanent)
            if failures:
                raise failures[0] from None
            raise
        return [t.result() for t in stored]

    async def _store_output(self, task: TaskMessage, n: int, file: OutputFile) -> OutputObject:
        bucket = self._cfg.output_bucket
        options = task.output
        if options is not None and image_format.wants_conversion(options, file.content_type):
            data, whole = await _read_bounded(file)
            if whole:
                return await self._store_converted(task, n, file, data, options)
            header = image_header(data)
            if header is None or not header.animated:
                raise OutputConversionError(
                    f"output {n} ({file.name or file.content_type}) is larger than "
                    f"{MAX_CONVERT_BYTES} bytes: too large to convert to {options.format.value}"
                )
            # An animation (kept as made) too large to hold: streamed from the runtime again.
        key = image_key(task.prefix, task.id, n, file.ext)
        if file.data is not None:
            info = describe(file.data, file.content_type)  # header reads only: cheap
            await self._store.put(bucket, key, file.data, file.content_type)
        else:
            probe = Probe(file.content_type)
            await self._store.put_stream(bucket, key, _probed(file, probe), file.content_type)
            info = probe.finish()
        return OutputObject(
            url=f"s3://{bucket}/{key}",
            kind=info.kind,
            content_type=file.content_type,
            bytes=info.bytes,
            width=info.width,
            height=info.height,
        )

    async def _store_converted(
        self, task: TaskMessage, n: int, file: OutputFile, data: bytes, options: OutputOptions
    ) -> OutputObject:
        """A still image in the asked format (Pillow in a thread, beside the next generation)."""
        bucket = self._cfg.output_bucket
        image = await asyncio.to_thread(
            image_format.convert, data, file.content_type, file.ext, options
        )
        key = image_key(task.prefix, task.id, n, image.ext)
        await self._store.put(bucket, key, image.data, image.content_type)
        return OutputObject(
            url=f"s3://{bucket}/{key}",
            kind=kind_of(image.content_type, animated=image.animated),
            content_type=image.content_type,
            bytes=len(image.data),
            width=image.width,
            height=image.height,
        )

    async def _webhook(
        self, task: TaskMessage, url: str, notification: ResultNotification, held: Held
    ) -> None:
        body = notification.model_dump_json(exclude_none=True).encode("utf-8")
        with held.stage("webhook") as span:
            delivered = await self._webhooks.deliver(url, body, task.id)
            span.set_attribute("sdq.delivered", delivered)
        held.log.info("webhook", delivered=delivered, url=redact_url(url))

    # ----------------------------------------------------------------------- notifications

    def _notification(
        self,
        task: TaskMessage,
        held: Held,
        state: TaskState,
        *,
        files: Sequence[OutputObject] = (),
        urls: list[str] | None = None,
        error: TaskError | None = None,
        timings: dict[str, float] | None = None,
    ) -> ResultNotification:
        return ResultNotification(
            id=task.id,
            runtime=task.runtime,
            result=state is TaskState.COMPLETED,
            status=state,
            image_url=urls if urls is not None else [f.url for f in files],
            files=list(files),
            output_location=self.output_location(task),
            context=task.context,
            error=error,
            timings=timings,
            trace_id=held.trace_id,
        )

    async def _publish(self, notification: ResultNotification) -> ResultNotification:
        """Publish with download links; the notification as published (the webhook sends the
        same)."""
        notification = await self._with_links(notification)
        await self._publisher.publish(notification)
        return notification

    async def _with_links(self, notification: ResultNotification) -> ResultNotification:
        """Every output (``files`` entry, or one described from its URI) with a fresh pre-signed
        GET link. Signing is local; if it fails the notification goes out without links (the
        status call signs its own), never failing a task that is done."""
        files = output_files(notification.image_url, notification.files)
        if self._links is None or not files:
            return notification.model_copy(update={"files": files})
        seconds = self._cfg.download_link_seconds
        signed_at = self._clock.now()
        try:
            links = await asyncio.gather(
                *(self._links.sign(*parse_s3_uri(f.url), seconds) for f in files)
            )
        except (TaskFailure, ValueError) as exc:
            _log.warning(
                "download_links_not_signed", task_id=notification.id, error=type(exc).__name__
            )
            return notification.model_copy(update={"files": files})
        linked = [
            with_link(f, link, signed_at, seconds) for f, link in zip(files, links, strict=True)
        ]
        return notification.model_copy(update={"files": linked})

    # ----------------------------------------------------------------------- not claimed

    async def not_claimed(self, held: Held, outcome: NotClaimed) -> None:
        """The status row refused the claim: another receive holds the task (hand this copy
        back until its lease runs out), or the task already ended: announce it again if this
        is the message whose handling ended it (its settle was cut short) or if nobody owns
        its announcement yet and this copy adopts it; then delete the message."""
        claim, task = outcome.claim, outcome.task
        if claim.outcome is ClaimOutcome.HELD_ELSEWHERE:
            await self._duplicate(held, claim.lease_until)
            return
        state = claim.record.status.value if claim.record else "done"
        message_id = held.message.message_id
        row, now = dict(claim.row or {}), self._clock.now()
        owed = row_rules.announcement(row, message_id, now=now, window=self._cfg.announce_window)
        if owed == "wait":
            await self._same_message_copy(held, row)
            return
        held.log.info(
            "task_already_finished_deleting_the_redelivered_message", status=state, owed=owed
        )
        try:
            with held.within():
                if owed == "adopt" and await self._status.adopt(task.id, message_id, now):
                    owed = "announce"
                mark = None
                if owed == "announce" and claim.record is not None:
                    await self._announce_record(task, held, claim.record)
                    mark = task.id
                await self._deletes.delete(held.message, announced=mark)
        except TaskFailure as exc:
            held.log.warning("could_not_settle_a_finished_task_s_message", cause=str(exc))
        self._metrics.outcome("skipped")
        await self._held.drop(held)

    async def _same_message_copy(self, held: Held, row: dict[str, Any]) -> None:
        """A copy of the message that settled the task, its row not yet marked announced and
        settled moments ago: the original may still be publishing or waiting for its batch
        (which marks the row). Back on the queue until that window has passed; then it finds
        the mark and is deleted, or (the original died before marking) announces."""
        window = self._cfg.announce_window
        # A stamp ahead of this clock (another agent's skew) waits no longer than the window.
        age = max(0.0, row_rules.settled_seconds_ago(row, self._clock.now()) or 0.0)
        delay = max(1, min(math.ceil(window - age), MAX_VISIBILITY))
        try:
            with held.within():
                await self._queue.set_visibility(held.message, delay)
        except TaskFailure as exc:
            held.log.warning("could_not_delay_a_duplicate_delivery", cause=str(exc))
        held.log.info("copy_of_the_settling_message_handed_back", retry_in_s=delay)
        self._metrics.outcome("duplicate")
        await self._held.drop(held)

    async def _duplicate(self, held: Held, lease_until: int) -> None:
        """A second copy of a task another receive runs: back on the queue, visible again when
        the holder's lease would have run out (by then the task ended and this copy is deleted,
        or the holder died and this copy takes over)."""
        remaining = lease_until - int(self._clock.now().timestamp()) + 1
        delay = max(1, min(remaining, self._cfg.visibility, MAX_VISIBILITY))
        try:
            with held.within():
                await self._queue.set_visibility(held.message, delay)
        except TaskFailure as exc:
            held.log.warning("could_not_delay_a_duplicate_delivery", cause=str(exc))
        held.log.info("duplicate_delivery_of_a_task_held_elsewhere_handed_back", retry_in_s=delay)
        self._metrics.outcome("duplicate")
        await self._held.drop(held)

    async def _announce_record(self, task: TaskMessage, held: Held, record: StatusRecord) -> None:
        """A finished task whose notification this message owes: announce it now."""
        held.log.warning("announcing_a_finished_task_whose_notification_was_not_confirmed")
        await self._publish(
            self._notification(
                task,
                held,
                record.status,
                files=record.files,
                # A row from before output metadata lists only the URIs.
                urls=list(record.outputs),
                error=record.error,
            )
        )

    # ----------------------------------------------------------------------- failures

    async def fail(self, held: Held, failure: TaskFailure) -> None:
        """Permanent → failed + delete; transient → backoff, or final failure before the DLQ."""
        message = held.message
        decision = decide(failure, message.receive_count, self._cfg)
        log = held.log.bind(error_code=failure.code, error=failure.message)
        mark = None  # the task this message announced (its row is marked with the delete)
        try:
            with held.within():
                error = TaskError(
                    code=failure.code, message=failure.message, permanent=decision.permanent
                )
                if decision.final and held.task is not None:
                    settled = await self._status.fail(
                        held.task.id,
                        error,
                        self._clock.now(),
                        self.new_row(held.task),
                        message.message_id,
                    )
                    held.leased = False
                    if settled:  # else the task ended otherwise: its notification is not ours
                        await self._publish(
                            self._notification(held.task, held, TaskState.FAILED, error=error)
                        )
                        mark = held.task.id
                elif held.task is not None and held.leased:
                    retry_at = self._clock.now() + timedelta(seconds=decision.delay)
                    await self._status.wait_to_retry(
                        held.task.id, held.holder, error, retry_at, self._clock.now()
                    )
                    held.leased = False
                if decision.verdict is Verdict.FAIL:
                    await self._deletes.delete(message, announced=mark)
                    log.error("task_failed_permanently_message_deleted")
                    self._metrics.outcome("failed")
                elif decision.verdict is Verdict.FAIL_LAST:
                    await self._queue.set_visibility(message, 0)
                    log.error(
                        "task_failed_on_its_last_allowed_receive_left_for_the_dead_letter_queue"
                    )
                    self._metrics.outcome("failed")
                else:
                    await self._queue.set_visibility(message, decision.delay)
                    log.warning("task_failed_transiently_will_retry", retry_in_s=decision.delay)
                    self._metrics.outcome("retried")
        except TaskFailure as exc:
            log.error("could_not_record_the_failure_the_message_will_reappear", cause=str(exc))
        await self._held.drop(held)

    async def poison(self, held: Held, poison: PoisonMessage) -> None:
        """Not a task: logged, final failure if an id is known, then left to dead-letter."""
        message = held.message
        log = held.log.bind(
            task_id=poison.task_id, reason=poison.reason, body_bytes=len(message.body)
        )
        last = message.receive_count >= self._cfg.max_receive_count
        try:
            with held.within():
                if last and poison.task_id is not None:
                    error = TaskError(code="invalid_message", message=poison.reason, permanent=True)
                    await self._status.fail(
                        poison.task_id, error, self._clock.now(), None, message.message_id
                    )
                    await self._publish(
                        ResultNotification(
                            id=poison.task_id,
                            runtime=self._cfg.runtime_name,
                            result=False,
                            status=TaskState.FAILED,
                            output_location=output_location(
                                self._cfg.output_bucket, "", poison.task_id
                            ),
                            error=error,
                            trace_id=held.trace_id,
                        )
                    )
                await self._queue.set_visibility(message, 0)
        except TaskFailure as exc:
            log.error("could_not_hand_back_a_poison_message", cause=str(exc))
        log.error("poison_message_leaving_it_for_the_dead_letter_queue", last_receive=last)
        self._metrics.outcome("poison")
        await self._held.drop(held)

    # ----------------------------------------------------------------------- cancel, release

    async def cancelled(self, held: Held) -> None:
        task = held.task
        if task is None:  # a cancel signal needs a parsed task; without one, hand it back
            await self.release(held, "cancelled before it was parsed")
            return
        try:
            with held.within():
                settled = await self._status.cancelled(
                    task.id, self._clock.now(), held.message.message_id
                )
                held.leased = False
                if settled:  # else another copy's handling cancelled it and announces it
                    await self._publish(self._notification(task, held, TaskState.CANCELLED))
                await self._deletes.delete(held.message, announced=task.id if settled else None)
                held.log.info("task_cancelled", announced=settled)
                self._metrics.outcome("cancelled")
        except TaskFailure as exc:
            held.log.error(
                "could_not_record_the_cancellation_the_message_will_reappear", cause=str(exc)
            )
        await self._held.drop(held)

    async def release(self, held: Held, reason: str) -> None:
        """Hand the message back at once (visibility 0): another agent takes it."""
        try:
            with held.within():
                await self._give_up_lease(held)
                await self._queue.set_visibility(held.message, 0)
        except TaskFailure as exc:
            held.log.warning(
                "could_not_hand_back_the_message_it_reappears_after_its_visibility", cause=str(exc)
            )
        held.log.info("message_handed_back", reason=reason)
        self._metrics.outcome("released")
        await self._held.drop(held)

    async def backoff(self, held: Held) -> None:
        """After an unexpected error: hand the message back after the backoff."""
        try:
            with held.within():
                await self._give_up_lease(held)
                await self._queue.set_visibility(
                    held.message, self._cfg.backoff(held.message.receive_count)
                )
        except TaskFailure as exc:
            held.log.warning("could_not_delay_the_message", cause=str(exc))
        await self._held.drop(held)

    async def _give_up_lease(self, held: Held) -> None:
        if held.leased and held.task is not None:
            await self._status.release(held.task.id, held.holder, self._clock.now())
            held.leased = False
