"""Roles of the in-cluster platform components sdq relies on: KEDA (reads queue depth to scale
runtimes) and the OpenTelemetry collector (exports traces to X-Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from sdq_infra import iam


@dataclass(frozen=True)
class PodRoleSpec:
    role_name: str
    cluster_name: str
    namespace: str
    service_account: str
    # Inline policy of the role; None when other stacks attach what it needs (KEDA: each
    # runtime stack grants its own queue, so adding a runtime needs no cluster apply).
    policy: str | None


class PodRole(Construct):
    """An IAM role bound to one Kubernetes service account through EKS pod identity."""

    def __init__(self, scope: Construct, construct_id: str, spec: PodRoleSpec) -> None:
        super().__init__(scope, construct_id)
        role = IamRole(
            self, "role", name=spec.role_name, assume_role_policy=iam.pod_identity_trust()
        )
        if spec.policy is not None:
            IamRolePolicy(self, "policy", name=construct_id, role=role.id, policy=spec.policy)
        EksPodIdentityAssociation(
            self,
            "identity",
            cluster_name=spec.cluster_name,
            namespace=spec.namespace,
            service_account=spec.service_account,
            role_arn=role.arn,
        )
        self.role_arn: str = role.arn


def keda_policy(queue_arns: Sequence[str]) -> str:
    """KEDA's SQS scaler reads queue depth and nothing else, on sdq's runtime queues only."""
    return iam.document(
        iam.allow(["sqs:GetQueueAttributes"], list(queue_arns), sid="ReadQueueDepth")
    )


def collector_policy() -> str:
    return iam.document(iam.xray_write())
