"""The Karpenter controller's IAM policy, as plain data (no cdktf import, so it tests fast)."""

from __future__ import annotations

from dataclasses import dataclass

from sdq_infra import iam
from sdq_infra.iam import Arns


@dataclass(frozen=True)
class KarpenterSpec:
    cluster_name: str
    # The cluster's name as a literal (cluster_name may be a Terraform reference): the tag
    # conditions of the controller policy name it.
    owner_cluster: str
    cluster_arn: str
    node_role_name: str
    controller_role_name: str
    interruption_queue_name: str
    namespace: str
    service_account: str
    # GPU nodes sync the model bucket into their instance-store cache.
    model_bucket: str


def controller_policy(spec: KarpenterSpec, node_role_arn: str, queue_arn: str, arns: Arns) -> str:
    """Karpenter's own v1.5 reference controller policy (its getting-started CloudFormation,
    ``KarpenterControllerPolicy``), statement for statement, scoped to this cluster.

    Launch templates Karpenter created are reused by CreateFleet/RunInstances, so they are
    allowed by their *resource* tags (request tags do not apply to an existing template), and
    every destructive or tagging call needs the ``karpenter.sh/nodepool`` tag as well as the
    cluster's ownership tag: the system node group's instances carry the ownership tag but no
    NodePool, so the controller can neither tag nor terminate them. The interruption queue,
    node role and instance profiles are this deployment's own.
    """
    cluster = spec.owner_cluster
    owned = f"kubernetes.io/cluster/{cluster}"
    ec2 = f"arn:{arns.partition}:ec2:{arns.region}"
    iam_arn = f"arn:{arns.partition}:iam::{arns.account}"
    launched = [
        f"{ec2}:*:{kind}/*"
        for kind in (
            "fleet",
            "instance",
            "volume",
            "network-interface",
            "launch-template",
            "spot-instances-request",
        )
    ]
    instance_profiles = [f"{iam_arn}:instance-profile/*"]
    nodepool_request = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
    nodepool_resource = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
    request_owned = {
        f"aws:RequestTag/{owned}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": cluster,
    }
    nodeclass_request = {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}
    nodeclass_resource = {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}
    region_tag = {"aws:RequestTag/topology.kubernetes.io/region": arns.region}
    resource_region_owned = {
        f"aws:ResourceTag/{owned}": "owned",
        "aws:ResourceTag/topology.kubernetes.io/region": arns.region,
    }
    return iam.document(
        iam.allow(
            ["ec2:CreateFleet", "ec2:RunInstances"],
            [
                f"{ec2}::image/*",
                f"{ec2}::snapshot/*",
                f"{ec2}:*:security-group/*",
                f"{ec2}:*:subnet/*",
                f"{ec2}:*:capacity-reservation/*",
            ],
            sid="AllowScopedEC2InstanceAccessActions",
        ),
        iam.allow(
            ["ec2:CreateFleet", "ec2:RunInstances"],
            [f"{ec2}:*:launch-template/*"],
            sid="AllowScopedEC2LaunchTemplateAccessActions",
            condition={
                "StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": nodepool_resource,
            },
        ),
        iam.allow(
            ["ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:RunInstances"],
            [*launched, f"{ec2}:*:capacity-reservation/*"],
            sid="AllowScopedEC2InstanceActionsWithTags",
            condition={"StringEquals": request_owned, "StringLike": nodepool_request},
        ),
        iam.allow(
            ["ec2:CreateTags"],
            launched,
            sid="AllowScopedResourceCreationTagging",
            condition={
                "StringEquals": {
                    **request_owned,
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
                "StringLike": nodepool_request,
            },
        ),
        iam.allow(
            ["ec2:CreateTags"],
            [f"{ec2}:*:instance/*"],
            sid="AllowScopedResourceTagging",
            condition={
                "StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": nodepool_resource,
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                },
            },
        ),
        iam.allow(
            ["ec2:DeleteLaunchTemplate", "ec2:TerminateInstances"],
            [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
            sid="AllowScopedDeletion",
            condition={
                "StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": nodepool_resource,
            },
        ),
        # Describe calls have no resource-level permissions; the region condition bounds them.
        iam.allow(
            [
                "ec2:DescribeCapacityReservations",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeInstances",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory",
                "ec2:DescribeSubnets",
            ],
            ["*"],
            sid="AllowRegionalReadActions",
            condition={"StringEquals": {"aws:RequestedRegion": arns.region}},
        ),
        iam.allow(
            ["ssm:GetParameter"],
            [
                f"arn:{arns.partition}:ssm:{arns.region}::parameter/aws/service/*",
                f"arn:{arns.partition}:ssm:{arns.region}:{arns.account}:parameter/imagebuilder/*",
            ],
            sid="AllowSSMReadActions",
        ),
        iam.allow(["pricing:GetProducts"], ["*"], sid="AllowPricingReadActions"),
        iam.allow(
            ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            [queue_arn],
            sid="AllowInterruptionQueueActions",
        ),
        iam.allow(
            ["iam:PassRole"],
            [node_role_arn],
            sid="AllowPassingInstanceRole",
            condition={
                "StringEquals": {
                    "iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]
                }
            },
        ),
        iam.allow(
            ["iam:CreateInstanceProfile"],
            instance_profiles,
            sid="AllowScopedInstanceProfileCreationActions",
            condition={
                "StringEquals": {**request_owned, **region_tag},
                "StringLike": nodeclass_request,
            },
        ),
        iam.allow(
            ["iam:TagInstanceProfile"],
            instance_profiles,
            sid="AllowScopedInstanceProfileTagActions",
            condition={
                "StringEquals": {**resource_region_owned, **request_owned, **region_tag},
                "StringLike": {**nodeclass_resource, **nodeclass_request},
            },
        ),
        iam.allow(
            [
                "iam:AddRoleToInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
            ],
            instance_profiles,
            sid="AllowScopedInstanceProfileActions",
            condition={"StringEquals": resource_region_owned, "StringLike": nodeclass_resource},
        ),
        iam.allow(
            ["iam:GetInstanceProfile"], instance_profiles, sid="AllowInstanceProfileReadActions"
        ),
        iam.allow(
            ["eks:DescribeCluster"], [spec.cluster_arn], sid="AllowAPIServerEndpointDiscovery"
        ),
    )
