"""Karpenter's AWS side: the GPU node role and instance profile, the controller's role (pod
identity), and the interruption queue fed by EventBridge (spot warnings, rebalance
recommendations, instance state changes, scheduled maintenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_instance_profile import IamInstanceProfile
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from cdktf_cdktf_provider_aws.sqs_queue_policy import SqsQueuePolicy
from constructs import Construct

from sdq_infra import iam
from sdq_infra.components.eks import NODE_MANAGED_POLICIES, attach_managed
from sdq_infra.iam import Arns

# Karpenter reads interruption events within minutes; older ones are useless.
INTERRUPTION_RETENTION_SECONDS = 300
INTERRUPTION_EVENTS: dict[str, dict[str, list[str]]] = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "rebalance": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance Rebalance Recommendation"],
    },
    "instance-state-change": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
}
# SSM is how model_sync reaches GPU nodes.
GPU_NODE_POLICIES = (*NODE_MANAGED_POLICIES, "AmazonSSMManagedInstanceCore")


@dataclass(frozen=True)
class KarpenterSpec:
    cluster_name: str
    cluster_arn: str
    node_role_name: str
    controller_role_name: str
    interruption_queue_name: str
    namespace: str
    service_account: str
    # GPU nodes sync the model bucket into their instance-store cache.
    model_bucket: str


@dataclass(frozen=True)
class KarpenterOutputs:
    node_role_name: str
    node_role_arn: str
    instance_profile_name: str
    controller_role_arn: str
    interruption_queue_name: str


class Karpenter(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, spec: KarpenterSpec, arns: Arns
    ) -> None:
        super().__init__(scope, construct_id)
        node_role = IamRole(
            self,
            "node-role",
            name=spec.node_role_name,
            assume_role_policy=iam.service_trust("ec2.amazonaws.com"),
        )
        attach_managed(self, "node-role", node_role, GPU_NODE_POLICIES, arns)
        IamRolePolicy(
            self,
            "node-models",
            name="read-models",
            role=node_role.id,
            policy=iam.document(
                iam.allow(
                    ["s3:GetObject", "s3:ListBucket"],
                    [arns.bucket(spec.model_bucket), arns.objects(spec.model_bucket)],
                    sid="SyncModelCache",
                )
            ),
        )
        profile = IamInstanceProfile(
            self, "node-profile", name=spec.node_role_name, role=node_role.name
        )
        EksAccessEntry(
            self,
            "node-access",
            cluster_name=spec.cluster_name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
        )
        queue = SqsQueue(
            self,
            "interruption-queue",
            name=spec.interruption_queue_name,
            message_retention_seconds=INTERRUPTION_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
        )
        SqsQueuePolicy(
            self,
            "interruption-queue-policy",
            queue_url=queue.url,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "EventBridgeDelivers",
                            "Effect": "Allow",
                            "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                            "Action": "sqs:SendMessage",
                            "Resource": queue.arn,
                        }
                    ],
                }
            ),
        )
        for key, pattern in INTERRUPTION_EVENTS.items():
            rule = CloudwatchEventRule(
                self,
                f"rule-{key}",
                name=f"{spec.cluster_name}-karpenter-{key}",
                event_pattern=json.dumps(pattern),
            )
            CloudwatchEventTarget(
                self, f"target-{key}", rule=rule.name, target_id="karpenter", arn=queue.arn
            )
        controller = IamRole(
            self,
            "controller-role",
            name=spec.controller_role_name,
            assume_role_policy=iam.pod_identity_trust(),
        )
        IamRolePolicy(
            self,
            "controller-policy",
            name="karpenter-controller",
            role=controller.id,
            policy=controller_policy(spec, node_role.arn, profile.arn, queue.arn, arns),
        )
        EksPodIdentityAssociation(
            self,
            "controller-identity",
            cluster_name=spec.cluster_name,
            namespace=spec.namespace,
            service_account=spec.service_account,
            role_arn=controller.arn,
        )
        self.outputs = KarpenterOutputs(
            node_role_name=node_role.name,
            node_role_arn=node_role.arn,
            instance_profile_name=profile.name,
            controller_role_arn=controller.arn,
            interruption_queue_name=queue.name,
        )


def controller_policy(
    spec: KarpenterSpec, node_role_arn: str, profile_arn: str, queue_arn: str, arns: Arns
) -> str:
    """The controller's permissions, after Karpenter's reference policy, scoped to this cluster:
    it may only launch, tag and terminate instances that carry the cluster's ownership tag."""
    owned = f"kubernetes.io/cluster/{spec.cluster_name}"
    region = {"StringEquals": {"aws:RequestedRegion": arns.region}}
    launch_inputs = [
        arns.ec2("image", account=False),
        arns.ec2("snapshot", account=False),
        arns.ec2("security-group"),
        arns.ec2("subnet"),
        arns.ec2("capacity-reservation"),
    ]
    launched = [
        arns.ec2(kind)
        for kind in (
            "fleet",
            "instance",
            "volume",
            "network-interface",
            "launch-template",
            "spot-instances-request",
        )
    ]
    return iam.document(
        iam.allow(
            ["ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:RunInstances"],
            launch_inputs,
            sid="LaunchFromSharedInputs",
        ),
        iam.allow(
            ["ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:RunInstances"],
            launched,
            sid="LaunchOwnedResources",
            condition={"StringEquals": {f"aws:RequestTag/{owned}": "owned"}},
        ),
        iam.allow(
            ["ec2:CreateTags"],
            launched,
            sid="TagOnLaunch",
            condition={
                "StringEquals": {
                    f"aws:RequestTag/{owned}": "owned",
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                }
            },
        ),
        iam.allow(
            ["ec2:CreateTags", "ec2:DeleteLaunchTemplate", "ec2:TerminateInstances"],
            [arns.ec2("instance"), arns.ec2("launch-template")],
            sid="ManageOwnedResources",
            condition={"StringEquals": {f"aws:ResourceTag/{owned}": "owned"}},
        ),
        # Describe calls have no resource-level permissions; the region condition bounds them.
        iam.allow(
            [
                "ec2:DescribeAvailabilityZones",
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
            sid="Describe",
            condition=region,
        ),
        iam.allow(["pricing:GetProducts"], ["*"], sid="Pricing"),
        iam.allow(
            ["ssm:GetParameter"], [arns.ssm_parameters("/aws/service/*")], sid="AmiParameters"
        ),
        iam.allow(
            ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            [queue_arn],
            sid="InterruptionQueue",
        ),
        iam.allow(
            ["iam:PassRole"],
            [node_role_arn],
            sid="PassNodeRole",
            condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        ),
        iam.allow(["iam:GetInstanceProfile"], [profile_arn], sid="ReadInstanceProfile"),
        iam.allow(["eks:DescribeCluster"], [spec.cluster_arn], sid="DescribeCluster"),
    )
