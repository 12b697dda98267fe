"""IAM policy documents as plain data, rendered to JSON strings.

Documents are built in Python (not with the provider's policy-document data source) so tests
can read every statement straight from the synthesized JSON. Resource ARNs may contain
Terraform tokens; cdktf turns them into ``${...}`` interpolations inside the JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Statement = dict[str, Any]


def allow(
    actions: Sequence[str],
    resources: Sequence[str],
    *,
    sid: str,
    condition: Mapping[str, Mapping[str, Any]] | None = None,
) -> Statement:
    if any("*" in action for action in actions):
        raise ValueError(f"statement {sid}: wildcard actions are not allowed: {list(actions)}")
    statement: Statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": list(resources),
    }
    if condition:
        statement["Condition"] = {key: dict(value) for key, value in condition.items()}
    return statement


def document(*statements: Statement) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust(*services: str) -> str:
    """Trust policy letting AWS services (``lambda.amazonaws.com``...) assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": sorted(services)},
                    "Action": ["sts:AssumeRole"],
                }
            ],
        }
    )


def pod_identity_trust() -> str:
    """Trust policy of a role bound to a Kubernetes service account by EKS pod identity."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


# X-Ray's write and sampling APIs have no resource-level permissions: "*" is the only resource.
XRAY_WRITE_ACTIONS = (
    "xray:GetSamplingRules",
    "xray:GetSamplingStatisticSummaries",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
)


def xray_write() -> Statement:
    return allow(XRAY_WRITE_ACTIONS, ["*"], sid="XRayWrite")


@dataclass(frozen=True)
class Arns:
    """Builds ARNs of named resources, so stacks refer to each other by name (no lookups)."""

    partition: str
    region: str
    account: str

    def _arn(
        self, service: str, resource: str, *, region: bool = True, account: bool = True
    ) -> str:
        return ":".join(
            (
                "arn",
                self.partition,
                service,
                self.region if region else "",
                self.account if account else "",
                resource,
            )
        )

    def sqs(self, name: str) -> str:
        return self._arn("sqs", name)

    def sns(self, name: str) -> str:
        return self._arn("sns", name)

    def dynamodb_table(self, name: str) -> str:
        return self._arn("dynamodb", f"table/{name}")

    def bucket(self, name: str) -> str:
        return self._arn("s3", name, region=False, account=False)

    def objects(self, bucket: str) -> str:
        return f"{self.bucket(bucket)}/*"

    def log_group(self, name: str) -> str:
        return self._arn("logs", f"log-group:{name}")

    def log_streams(self, group: str) -> str:
        return f"{self.log_group(group)}:log-stream:*"

    def ssm_document(self, name: str) -> str:
        return self._arn("ssm", f"document/{name}", account=False)

    def ssm_parameters(self, prefix: str) -> str:
        return self._arn("ssm", f"parameter{prefix}", account=False)

    def ec2(self, resource_type: str, account: bool = True) -> str:
        return self._arn("ec2", f"{resource_type}/*", account=account)

    def managed_policy(self, name: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{name}"
