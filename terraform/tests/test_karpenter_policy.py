"""The Karpenter controller policy against Karpenter's own reference policy.

REFERENCE is transcribed from aws/karpenter-provider-aws,
website/content/en/v1.5/getting-started/getting-started-with-karpenter/cloudformation.yaml
(resource KarpenterControllerPolicy), with its CloudFormation substitutions written as
{partition} {region} {account} {cluster} {queue} {node_role}. The synthesized policy must carry
exactly these statements: same actions, resources and conditions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdq_infra.iam import Arns
from sdq_infra.karpenter_policy import KarpenterSpec, controller_policy

pytestmark = pytest.mark.unit

EC2 = "arn:{partition}:ec2:{region}"
IP = "arn:{partition}:iam::{account}:instance-profile/*"
OWNED = "kubernetes.io/cluster/{cluster}"
LAUNCHED = [
    f"{EC2}:*:{kind}/*"
    for kind in (
        "fleet", "instance", "volume", "network-interface", "launch-template",
        "spot-instances-request",
    )
]  # fmt: skip

REFERENCE: dict[str, dict[str, Any]] = {
    "AllowScopedEC2InstanceAccessActions": {
        "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
        "Resource": [
            f"{EC2}::image/*",
            f"{EC2}::snapshot/*",
            f"{EC2}:*:security-group/*",
            f"{EC2}:*:subnet/*",
            f"{EC2}:*:capacity-reservation/*",
        ],
    },
    "AllowScopedEC2LaunchTemplateAccessActions": {
        "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
        "Resource": [f"{EC2}:*:launch-template/*"],
        "Condition": {
            "StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"},
            "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
        },
    },
    "AllowScopedEC2InstanceActionsWithTags": {
        "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
        "Resource": [*LAUNCHED, f"{EC2}:*:capacity-reservation/*"],
        "Condition": {
            "StringEquals": {
                f"aws:RequestTag/{OWNED}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": "{cluster}",
            },
            "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
        },
    },
    "AllowScopedResourceCreationTagging": {
        "Action": ["ec2:CreateTags"],
        "Resource": LAUNCHED,
        "Condition": {
            "StringEquals": {
                f"aws:RequestTag/{OWNED}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": "{cluster}",
                "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
            },
            "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
        },
    },
    "AllowScopedResourceTagging": {
        "Action": ["ec2:CreateTags"],
        "Resource": [f"{EC2}:*:instance/*"],
        "Condition": {
            "StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"},
            "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
            "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": "{cluster}"},
            "ForAllValues:StringEquals": {
                "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
            },
        },
    },
    "AllowScopedDeletion": {
        "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
        "Resource": [f"{EC2}:*:instance/*", f"{EC2}:*:launch-template/*"],
        "Condition": {
            "StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"},
            "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
        },
    },
    "AllowRegionalReadActions": {
        "Action": [
            "ec2:DescribeCapacityReservations",
            "ec2:DescribeImages",
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeLaunchTemplates",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSpotPriceHistory",
            "ec2:DescribeSubnets",
        ],
        "Resource": ["*"],
        "Condition": {"StringEquals": {"aws:RequestedRegion": "{region}"}},
    },
    "AllowSSMReadActions": {
        "Action": ["ssm:GetParameter"],
        "Resource": [
            "arn:{partition}:ssm:{region}::parameter/aws/service/*",
            "arn:{partition}:ssm:{region}:{account}:parameter/imagebuilder/*",
        ],
    },
    "AllowPricingReadActions": {"Action": ["pricing:GetProducts"], "Resource": ["*"]},
    "AllowInterruptionQueueActions": {
        "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
        "Resource": ["{queue}"],
    },
    "AllowPassingInstanceRole": {
        "Action": ["iam:PassRole"],
        "Resource": ["{node_role}"],
        "Condition": {
            "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}
        },
    },
    "AllowScopedInstanceProfileCreationActions": {
        "Action": ["iam:CreateInstanceProfile"],
        "Resource": [IP],
        "Condition": {
            "StringEquals": {
                f"aws:RequestTag/{OWNED}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": "{cluster}",
                "aws:RequestTag/topology.kubernetes.io/region": "{region}",
            },
            "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
        },
    },
    "AllowScopedInstanceProfileTagActions": {
        "Action": ["iam:TagInstanceProfile"],
        "Resource": [IP],
        "Condition": {
            "StringEquals": {
                f"aws:ResourceTag/{OWNED}": "owned",
                "aws:ResourceTag/topology.kubernetes.io/region": "{region}",
                f"aws:RequestTag/{OWNED}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": "{cluster}",
                "aws:RequestTag/topology.kubernetes.io/region": "{region}",
            },
            "StringLike": {
                "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
            },
        },
    },
    "AllowScopedInstanceProfileActions": {
        "Action": [
            "iam:AddRoleToInstanceProfile",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:DeleteInstanceProfile",
        ],
        "Resource": [IP],
        "Condition": {
            "StringEquals": {
                f"aws:ResourceTag/{OWNED}": "owned",
                "aws:ResourceTag/topology.kubernetes.io/region": "{region}",
            },
            "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
        },
    },
    "AllowInstanceProfileReadActions": {"Action": ["iam:GetInstanceProfile"], "Resource": [IP]},
    "AllowAPIServerEndpointDiscovery": {
        "Action": ["eks:DescribeCluster"],
        "Resource": ["arn:{partition}:eks:{region}:{account}:cluster/{cluster}"],
    },
}

VALUES = {
    "partition": "aws",
    "region": "us-west-2",
    "account": "123456789012",
    "cluster": "sdq",
    "queue": "arn:aws:sqs:us-west-2:123456789012:sdq-karpenter-interruption",
    "node_role": "arn:aws:iam::123456789012:role/sdq-karpenter-node",
}


def fill(value: Any) -> Any:
    """The reference with its substitutions made; lists become sorted tuples (order-free)."""
    if isinstance(value, str):
        return value.format(**VALUES)
    if isinstance(value, list):
        return tuple(sorted(fill(item) for item in value))
    if isinstance(value, dict):
        return {fill(key): fill(item) for key, item in value.items()}
    return value


def normalized(statement: dict[str, Any]) -> dict[str, Any]:
    body = {key: statement[key] for key in ("Action", "Resource", "Condition") if key in statement}
    return {key: fill(value) for key, value in body.items()}


def synthesized_policy() -> dict[str, Any]:
    spec = KarpenterSpec(
        cluster_name="sdq",
        owner_cluster="sdq",
        cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/sdq",
        node_role_name="sdq-karpenter-node",
        controller_role_name="sdq-karpenter-controller",
        interruption_queue_name="sdq-karpenter-interruption",
        namespace="kube-system",
        service_account="karpenter",
        model_bucket="models",
    )
    arns = Arns(partition="aws", region="us-west-2", account="123456789012")
    document = json.loads(controller_policy(spec, VALUES["node_role"], VALUES["queue"], arns))
    return document  # type: ignore[no-any-return]


def test_controller_policy_is_karpenters_v1_5_reference_policy() -> None:
    statements = synthesized_policy()["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    ours = {s["Sid"]: normalized(s) for s in statements}
    reference = {sid: fill(body) for sid, body in REFERENCE.items()}
    assert sorted(ours) == sorted(reference)
    for sid, body in reference.items():
        assert ours[sid] == body, sid


def test_existing_launch_templates_are_allowed_by_their_resource_tags() -> None:
    """CreateFleet with a launch template Karpenter made earlier carries no request tags for
    it: the template must be allowed by its own (resource) tags."""
    statements = synthesized_policy()["Statement"]
    template = "arn:aws:ec2:us-west-2:*:launch-template/*"
    allowing = [
        s
        for s in statements
        if "ec2:CreateFleet" in s["Action"]
        and template in s["Resource"]
        and not any(
            k.startswith("aws:RequestTag/") for c in s.get("Condition", {}).values() for k in c
        )
    ]
    assert allowing, "no statement allows CreateFleet on an existing launch template"


def test_terminate_needs_a_nodepool_tag() -> None:
    """System node group instances carry the cluster tag but no NodePool tag."""
    for statement in synthesized_policy()["Statement"]:
        if {"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"} & set(statement["Action"]):
            like = statement["Condition"]["StringLike"]
            assert like == {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
