"""SSM adapter: send the node sync command (AWS-RunShellScript) and read per-node results."""

from __future__ import annotations

from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from sdq_model_sync.domain.commands import NodeCommand
from sdq_model_sync.domain.ports import NodeResult
from sdq_model_sync.errors import NodesNotManaged, TransientSyncError

DOCUMENT_NAME = "AWS-RunShellScript"

log = structlog.get_logger("sdq_model_sync")


class SsmCommands:
    """``send`` uses a client with botocore retries; ``results`` a single-attempt one.

    Per-node results are best effort: right after SendCommand, ListCommandInvocations usually
    shows Pending/InProgress (or nothing yet); the command ids are logged so an operator can
    follow up with ``aws ssm list-command-invocations --command-id ID --details``.
    """

    def __init__(self, ssm_client: Any, report_client: Any | None = None) -> None:
        self._ssm = ssm_client
        self._report = report_client if report_client is not None else ssm_client

    def send(self, instance_ids: tuple[str, ...], command: NodeCommand) -> str:
        try:
            response = self._ssm.send_command(
                InstanceIds=list(instance_ids),
                DocumentName=DOCUMENT_NAME,
                Comment=command.comment,
                TimeoutSeconds=command.delivery_timeout_seconds,
                Parameters={
                    "commands": list(command.commands),
                    "executionTimeout": [str(command.execution_timeout_seconds)],
                },
                # Every node syncs at once (each has its own S3 bandwidth) and one node's
                # failure never stops delivery to the others (MaxErrors defaults to 0).
                MaxConcurrency="100%",
                MaxErrors="100%",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidInstanceId":
                raise NodesNotManaged(instance_ids, str(exc)) from exc
            raise TransientSyncError(f"SendCommand failed ({code}): {exc}") from exc
        except BotoCoreError as exc:
            raise TransientSyncError(f"SendCommand failed: {exc}") from exc
        return str(response["Command"]["CommandId"])

    def results(self, command_id: str) -> tuple[NodeResult, ...]:
        results: list[NodeResult] = []
        try:
            pages = self._report.get_paginator("list_command_invocations").paginate(
                CommandId=command_id
            )
            for page in pages:
                for invocation in page.get("CommandInvocations", []):
                    results.append(
                        NodeResult(
                            instance_id=invocation["InstanceId"],
                            status=invocation.get("Status", "Unknown"),
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "model_sync_node_results_unavailable", command_id=command_id, error=str(exc)
            )
            return ()
        return tuple(results)
