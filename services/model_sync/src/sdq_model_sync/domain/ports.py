"""Ports of model sync; adapters implement them for AWS, tests and the local stack with fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sdq_model_sync.domain.commands import NodeCommand


@dataclass(frozen=True)
class NodeResult:
    """One node's view of a command, as far as it is visible when asked."""

    instance_id: str
    status: str
    response_code: int | None = None
    output: str = ""


class NodeFinder(Protocol):
    def gpu_nodes(self) -> tuple[str, ...]:
        """Instance ids of the cluster's running GPU nodes (found by tags, never all)."""
        ...


class CommandSender(Protocol):
    def send(self, instance_ids: tuple[str, ...], command: NodeCommand) -> str:
        """Send one command to these nodes; return its command id.

        Raises NodesNotManaged when the targets include instances that cannot take commands
        yet, TransientSyncError for any other failure.
        """
        ...

    def results(self, command_id: str) -> tuple[NodeResult, ...]:
        """Per-node results visible now (best effort; may be empty or still pending)."""
        ...
