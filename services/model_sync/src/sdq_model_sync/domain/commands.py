"""What a sync sends to the nodes: the selection of relevant changes and the node command."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sdq_model_sync.domain.events import ObjectChange

# SSM SendCommand accepts at most 50 instance ids per call.
SSM_MAX_INSTANCE_IDS = 50
# SSM limits the command comment to 100 characters.
SSM_MAX_COMMENT = 100


def normalize_prefix(prefix: str) -> str:
    """``models`` → ``models/``; empty means the whole bucket (same rule as the node script)."""
    stripped = prefix.lstrip("/")
    if stripped and not stripped.endswith("/"):
        stripped += "/"
    return stripped


@dataclass(frozen=True)
class Selection:
    relevant: tuple[ObjectChange, ...]
    skipped: tuple[str, ...]


def select_changes(changes: Sequence[ObjectChange], bucket: str, prefix: str) -> Selection:
    """Keep the changes of our bucket under our prefix; folder markers change nothing."""
    wanted = normalize_prefix(prefix)
    relevant: list[ObjectChange] = []
    skipped: list[str] = []
    for change in changes:
        if change.bucket != bucket:
            skipped.append(f"other bucket {change.bucket}")
        elif not change.key.startswith(wanted):
            skipped.append(f"outside prefix: {change.key}")
        elif change.key.endswith("/"):
            skipped.append(f"folder marker: {change.key}")
        else:
            relevant.append(change)
    return Selection(tuple(relevant), tuple(skipped))


@dataclass(frozen=True)
class NodeSyncSpec:
    """How every node runs the sync: the script on the node and its arguments."""

    script_path: str
    bucket: str
    prefix: str
    cache_dir: str
    region: str | None
    execution_timeout_seconds: int
    delivery_timeout_seconds: int


@dataclass(frozen=True)
class NodeCommand:
    """One shell command for AWS-RunShellScript (or the local runner), with its metadata."""

    commands: tuple[str, ...]
    comment: str
    execution_timeout_seconds: int
    delivery_timeout_seconds: int


def node_command(spec: NodeSyncSpec, changes: Sequence[ObjectChange]) -> NodeCommand:
    args = [spec.script_path, "--bucket", spec.bucket, "--dest", spec.cache_dir]
    prefix = normalize_prefix(spec.prefix)
    if prefix:
        args += ["--prefix", prefix]
    if spec.region:
        args += ["--region", spec.region]
    line = " ".join(shlex.quote(arg) for arg in args)
    return NodeCommand(
        commands=(line,),
        comment=sync_comment(spec.bucket, prefix, changes),
        execution_timeout_seconds=spec.execution_timeout_seconds,
        delivery_timeout_seconds=spec.delivery_timeout_seconds,
    )


def sync_comment(bucket: str, prefix: str, changes: Sequence[ObjectChange]) -> str:
    created = sum(1 for c in changes if c.kind == "created")
    removed = len(changes) - created
    comment = f"sdq model sync: +{created} -{removed} in s3://{bucket}/{prefix}"
    if len(comment) > SSM_MAX_COMMENT:
        comment = comment[: SSM_MAX_COMMENT - 3] + "..."
    return comment


def chunked(items: Sequence[str], size: int = SSM_MAX_INSTANCE_IDS) -> Iterator[tuple[str, ...]]:
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])
