"""Output object keys. Deterministic in the task id, so a redelivered task overwrites its own
objects instead of adding new ones."""

from __future__ import annotations

import hashlib

CLAIM_CHECK_PREFIX = "_sdq/requests"


def task_suffix(task_id: str) -> str:
    """The ``xxxx`` of every output key: four hex digits derived from the task id."""
    return hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:4]


def output_prefix(prefix: str, task_id: str) -> str:
    """The folder of one task's outputs: ``{prefix}/{id}`` (or ``{id}`` with no prefix)."""
    return f"{prefix.rstrip('/')}/{task_id}" if prefix else task_id


def output_location(bucket: str, prefix: str, task_id: str) -> str:
    return f"s3://{bucket}/{output_prefix(prefix, task_id)}"


def image_key(prefix: str, task_id: str, n: int, ext: str = "png") -> str:
    """``{prefix}/{id}/{id}-{xxxx}-{n}.{ext}``; ``n`` counts from 1."""
    if n < 1:
        raise ValueError("output numbers count from 1")
    return (
        f"{output_prefix(prefix, task_id)}/{task_id}-{task_suffix(task_id)}-{n}.{ext.lstrip('.')}"
    )


def response_key(prefix: str, task_id: str) -> str:
    """``{prefix}/{id}/{id}-{xxxx}.out``: the runtime's full response."""
    return f"{output_prefix(prefix, task_id)}/{task_id}-{task_suffix(task_id)}.out"


def claim_check_key(task_id: str) -> str:
    """Where the API stores a task body too large for SNS."""
    return f"{CLAIM_CHECK_PREFIX}/{task_id}.json"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key
