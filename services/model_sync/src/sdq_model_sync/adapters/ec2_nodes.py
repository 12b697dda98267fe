"""EC2 adapter: the cluster's running GPU nodes, found by the tags the EC2NodeClass sets."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sdq_contracts.naming import NODE_ROLE_GPU, NODE_TAG_CLUSTER, NODE_TAG_ROLE
from sdq_model_sync.errors import TransientSyncError


class Ec2GpuNodes:
    """DescribeInstances filtered server-side by tags and state: never every instance."""

    def __init__(self, ec2_client: Any, cluster_name: str) -> None:
        self._ec2 = ec2_client
        self._filters = [
            {"Name": f"tag:{NODE_TAG_CLUSTER}", "Values": [cluster_name]},
            {"Name": f"tag:{NODE_TAG_ROLE}", "Values": [NODE_ROLE_GPU]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]

    def gpu_nodes(self) -> tuple[str, ...]:
        found: list[str] = []
        try:
            pages = self._ec2.get_paginator("describe_instances").paginate(
                Filters=self._filters, PaginationConfig={"PageSize": 500}
            )
            for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(i["InstanceId"] for i in reservation.get("Instances", []))
        except (BotoCoreError, ClientError) as exc:
            raise TransientSyncError(f"DescribeInstances failed: {exc}") from exc
        return tuple(sorted(set(found)))
