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
from sdq_infra.karpenter_policy import KarpenterSpec, controller_policy

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
                        },
                        {
                            "Sid": "DenyHTTP",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "sqs:*",
                            "Resource": queue.arn,
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
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
            policy=controller_policy(spec, node_role.arn, queue.arn, arns),
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
