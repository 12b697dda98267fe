"""What can go wrong in a sync, and what happens to the triggering message."""

from __future__ import annotations


class ModelSyncError(Exception):
    """Base of model sync errors."""


class TransientSyncError(ModelSyncError):
    """An AWS call failed; the triggering messages are left for retry (the sync is idempotent)."""


class NodesNotManaged(ModelSyncError):
    """SSM refused the targets: at least one instance is not (yet) an SSM managed node.

    A node that is still booting runs the same script from its user data, so the caller narrows
    the target list rather than failing the sync.
    """

    def __init__(self, instance_ids: tuple[str, ...], detail: str) -> None:
        super().__init__(f"not SSM-managed (yet): {', '.join(instance_ids)}: {detail}")
        self.instance_ids = instance_ids
