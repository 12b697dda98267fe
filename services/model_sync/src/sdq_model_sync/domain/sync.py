"""The model sync use case: event → relevant changes → one node command on every GPU node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from sdq_model_sync.domain.commands import (
    NodeCommand,
    NodeSyncSpec,
    chunked,
    node_command,
    select_changes,
)
from sdq_model_sync.domain.events import EventOrigin, ObjectChange, ParsedEvent, parse_event
from sdq_model_sync.domain.ports import CommandSender, NodeFinder, NodeResult
from sdq_model_sync.errors import NodesNotManaged, TransientSyncError

log = structlog.get_logger("sdq_model_sync")
tracer = trace.get_tracer("sdq_model_sync")


class SyncStatus(StrEnum):
    IGNORED = "ignored"  # nothing relevant to our bucket/prefix in the event
    NO_NODES = "no_nodes"  # relevant changes, but no running GPU node: a logged no-op
    SENT = "sent"  # the command reached every chunk of nodes
    FAILED = "failed"  # finding nodes or sending failed; triggering messages are retried


@dataclass(frozen=True)
class SyncOutcome:
    status: SyncStatus
    origin: EventOrigin
    bucket: str
    changes: tuple[ObjectChange, ...] = ()
    command_ids: tuple[str, ...] = ()
    targeted: tuple[str, ...] = ()
    not_managed: tuple[str, ...] = ()
    node_results: tuple[NodeResult, ...] = ()
    malformed: tuple[str, ...] = ()
    failed_message_ids: tuple[str, ...] = ()
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "bucket": self.bucket,
            "keys": [change.key for change in self.changes],
            "command_ids": list(self.command_ids),
            "targeted": list(self.targeted),
            "not_managed": list(self.not_managed),
            "node_results": [
                {"instance_id": r.instance_id, "status": r.status, "response_code": r.response_code}
                for r in self.node_results
            ],
            "malformed": list(self.malformed),
            "error": self.error,
        }


class SyncFailedError(Exception):
    """Raised to the Lambda runtime for non-SQS triggers so the invocation is retried."""


def lambda_response(outcome: SyncOutcome) -> dict[str, Any]:
    """What the Lambda returns: a partial batch response for SQS, else the summary.

    For SQS only ``batchItemFailures`` is returned (ReportBatchItemFailures must be enabled on
    the event source mapping); other triggers have no partial-failure channel, so a failed sync
    raises and the invocation is retried by Lambda.
    """
    if outcome.origin is EventOrigin.SQS:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in outcome.failed_message_ids]}
    if outcome.status is SyncStatus.FAILED:
        raise SyncFailedError(outcome.error or "model sync failed")
    return outcome.summary()


@dataclass
class ModelSync:
    spec: NodeSyncSpec
    nodes: NodeFinder
    sender: CommandSender

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The Lambda code path (also driven by the local runner)."""
        return lambda_response(self.run(event))

    def run(self, event: object) -> SyncOutcome:
        with tracer.start_as_current_span("model_sync.handle", kind=SpanKind.CONSUMER) as span:
            parsed = parse_event(event)
            outcome = self._sync(parsed)
            span.set_attribute("sdq.status", str(outcome.status))
            span.set_attribute("sdq.keys", len(outcome.changes))
            span.set_attribute("sdq.targeted", len(outcome.targeted))
        log.info(
            "model_sync_done",
            status=str(outcome.status),
            origin=str(outcome.origin),
            bucket=outcome.bucket,
            keys=len(outcome.changes),
            command_ids=list(outcome.command_ids),
            targeted=len(outcome.targeted),
            not_managed=list(outcome.not_managed),
            malformed=len(outcome.malformed),
            failed_messages=len(outcome.failed_message_ids),
            error=outcome.error,
        )
        return outcome

    def _sync(self, parsed: ParsedEvent) -> SyncOutcome:
        for problem in parsed.malformed:
            log.warning("model_sync_malformed_record", problem=problem)
        selection = select_changes(parsed.changes, self.spec.bucket, self.spec.prefix)
        base = SyncOutcome(
            status=SyncStatus.IGNORED,
            origin=parsed.origin,
            bucket=self.spec.bucket,
            changes=selection.relevant,
            malformed=parsed.malformed,
        )
        log.info(
            "model_sync_event",
            bucket=self.spec.bucket,
            keys=len(selection.relevant),
            messages=len(parsed.messages),
            ignored=len(parsed.ignored) + len(selection.skipped),
            malformed=len(parsed.malformed),
        )
        if not selection.relevant:
            return base
        command = node_command(self.spec, selection.relevant)
        try:
            with tracer.start_as_current_span("ec2.find_gpu_nodes") as span:
                instance_ids = self.nodes.gpu_nodes()
                span.set_attribute("sdq.nodes", len(instance_ids))
            if not instance_ids:
                log.info("model_sync_no_nodes", bucket=self.spec.bucket)
                return replace(base, status=SyncStatus.NO_NODES)
            sent: list[tuple[str, tuple[str, ...]]] = []
            not_managed: list[str] = []
            for chunk in chunked(instance_ids):
                self._send(chunk, command, sent, not_managed)
        except TransientSyncError as exc:
            log.error("model_sync_failed", error=str(exc))
            relevant = set(selection.relevant)
            retry = tuple(
                m.message_id
                for m in parsed.messages
                if m.message_id and relevant.intersection(m.changes)
            )
            return replace(base, status=SyncStatus.FAILED, error=str(exc), failed_message_ids=retry)
        results = tuple(r for command_id, _ in sent for r in self.sender.results(command_id))
        for result in results:
            log.info(
                "model_sync_node_result",
                instance_id=result.instance_id,
                status=result.status,
                response_code=result.response_code,
            )
        return replace(
            base,
            status=SyncStatus.SENT,
            command_ids=tuple(command_id for command_id, _ in sent),
            targeted=tuple(i for _, ids in sent for i in ids),
            not_managed=tuple(not_managed),
            node_results=results,
        )

    def _send(
        self,
        chunk: tuple[str, ...],
        command: NodeCommand,
        sent: list[tuple[str, tuple[str, ...]]],
        not_managed: list[str],
    ) -> None:
        """Send to a chunk; if SSM refuses some targets, bisect so the managed ones still sync.

        A node whose SSM agent has not registered yet is still booting and runs the same script
        from its user data, so it is reported, not retried. At most 2n-1 calls for n ids.
        """
        try:
            with tracer.start_as_current_span("ssm.send_command") as span:
                span.set_attribute("sdq.instances", len(chunk))
                command_id = self.sender.send(chunk, command)
                span.set_attribute("sdq.command_id", command_id)
        except NodesNotManaged as exc:
            if len(chunk) == 1:
                log.warning("model_sync_node_not_managed", instance_id=chunk[0])
                not_managed.append(chunk[0])
                return
            log.info("model_sync_narrowing_targets", targets=len(chunk), detail=str(exc))
            half = len(chunk) // 2
            self._send(chunk[:half], command, sent, not_managed)
            self._send(chunk[half:], command, sent, not_managed)
            return
        log.info(
            "model_sync_command_sent",
            command_id=command_id,
            instances=len(chunk),
            bucket=self.spec.bucket,
            comment=command.comment,
        )
        sent.append((command_id, chunk))
