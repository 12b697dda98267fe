"""What ``make destroy`` checks before it destroys anything, and the cluster drain hook.

Terraform refuses to delete a non-empty S3 bucket or an ECR repository holding images (sdq
never sets force_destroy: outputs, models and releases are the user's data). Rather than fail
half-way through, destroy looks first and refuses with what is in the way and how to remove it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, RuntimeType
from sdq_infra import names


class Inventory(Protocol):
    """Counts what would block a destroy (None: the bucket/repository does not exist)."""

    def bucket_objects(self, bucket: str) -> int | None: ...

    def repository_images(self, repository: str) -> int | None: ...


@dataclass(frozen=True)
class Blocker:
    stack: str
    what: str
    how_to_remove: str

    def line(self) -> str:
        return f"  {self.stack}: {self.what}\n      remove: {self.how_to_remove}"


def _repositories(cfg: DeploymentConfig) -> list[str]:
    return [
        naming.queue_agent_repository_name(cfg),
        *(names.runtime_image_repository_name(cfg, kind) for kind in RuntimeType),
    ]


def blockers(
    cfg: DeploymentConfig, stacks: Sequence[str], inventory: Inventory, state_bucket: str
) -> list[Blocker]:
    """Everything in ``stacks`` Terraform would refuse to delete."""
    buckets = {
        "routing": cfg.buckets.outputs,
        "model_sync": cfg.buckets.models,
        "state": state_bucket,
    }
    found: list[Blocker] = []
    for stack, bucket in buckets.items():
        if stack not in stacks:
            continue
        count = inventory.bucket_objects(bucket)
        if count:
            found.append(
                Blocker(
                    stack,
                    f"bucket {bucket} is not empty ({count}+ objects or versions)",
                    f"aws s3 rm s3://{bucket} --recursive (and delete old versions of a "
                    "versioned bucket in the console or with `aws s3api delete-objects`)",
                )
            )
    if "registry" in stacks:
        for repository in _repositories(cfg):
            count = inventory.repository_images(repository)
            if count:
                found.append(
                    Blocker(
                        "registry",
                        f"ECR repository {repository} holds {count} image(s)",
                        f"aws ecr delete-repository --force --repository-name {repository} "
                        f"--region {cfg.region}",
                    )
                )
    return found


def refusal(found: Sequence[Blocker]) -> str:
    lines = "\n".join(blocker.line() for blocker in found)
    return (
        "refusing to destroy: these hold data Terraform will not delete (sdq never deletes "
        f"outputs, models or released images for you):\n{lines}\n"
        "Remove them (commands above) and rerun `make destroy CONFIRM=yes`, or keep them by "
        "destroying only other stacks (STACKS=...)."
    )


class Boto3Inventory:
    """:class:`Inventory` over the AWS APIs (one page each: any object at all blocks)."""

    def __init__(self, region: str, endpoint_url: str | None = None) -> None:
        import boto3  # noqa: PLC0415 - only destroy needs it

        # The emulator takes any credentials (the provider uses these too).
        keys = (
            {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
            if endpoint_url
            else {}
        )
        session = boto3.session.Session(region_name=region, **keys)
        self._s3 = session.client("s3", endpoint_url=endpoint_url)
        self._ecr = session.client("ecr", endpoint_url=endpoint_url)

    def bucket_objects(self, bucket: str) -> int | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            page = self._s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404"):
                return None
            raise
        return len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))

    def repository_images(self, repository: str) -> int | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            page = self._ecr.list_images(repositoryName=repository, maxResults=1000)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                return None
            raise
        return len(page.get("imageIds", []))


# The k8s side's drain: delete the NodePools and NodeClaims, wait until Karpenter has terminated
# every instance it launched. It must run while the cluster (and Karpenter's IAM role) exists.
def drain_command(config_path: Path, outputs_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sdq_k8s",
        "platform",
        "drain",
        "--config",
        str(config_path),
        "--outputs",
        str(outputs_dir),
    ]


Runner = Callable[[list[str]], int]


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode  # noqa: S603 - our own module


def drain_cluster(
    config_path: Path,
    outputs_dir: Path,
    say: Callable[[str], None],
    runner: Runner = _run,
) -> bool:
    """The hook destroy runs before the cluster stack goes: True when it is safe to go on.

    Without the cluster's outputs (``cluster.json``, written by `make apply`) there is no cluster
    to drain: it says so and lets destroy go on.
    """
    if not (outputs_dir / "cluster.json").is_file():
        say(f"no {outputs_dir / 'cluster.json'}: no cluster of this deployment to drain")
        return True
    command = drain_command(config_path, outputs_dir)
    say(f"draining Karpenter's nodes: {' '.join(command[1:])}")
    code = runner(command)
    if code != 0:
        say(
            f"the drain step failed ({code}): the cluster is kept so Karpenter can still "
            "terminate its instances; fix the cause and rerun `make destroy CONFIRM=yes`"
        )
        return False
    return True
