"""One runtime's share of the pipeline: its queue and DLQ, its subscription to the input topic
and the IAM role its pods (queue agent + runtime) run as."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from constructs import Construct

from sdq_infra import iam
from sdq_infra.iam import Arns

LONG_POLL_SECONDS = 20


@dataclass(frozen=True)
class RuntimeQueueSpec:
    queue_name: str
    dlq_name: str
    visibility_timeout_seconds: int
    task_timeout_seconds: int
    max_receive_count: int
    queue_retention_seconds: int
    dlq_retention_seconds: int
    filter_policy: Mapping[str, Any]
    input_topic_arn: str
    role_name: str
    # What the agent may touch besides its own queue.
    model_bucket: str
    output_bucket: str
    output_topic_arn: str
    status_table_arn: str

    def __post_init__(self) -> None:
        if self.visibility_timeout_seconds < self.task_timeout_seconds:
            raise ValueError(
                f"queue {self.queue_name}: visibility {self.visibility_timeout_seconds}s is "
                f"shorter than the task timeout {self.task_timeout_seconds}s"
            )


@dataclass(frozen=True)
class RuntimeQueueOutputs:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    role_arn: str
    role_name: str


class RuntimeQueue(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, spec: RuntimeQueueSpec, arns: Arns
    ) -> None:
        super().__init__(scope, construct_id)
        dlq = SqsQueue(
            self,
            "dlq",
            name=spec.dlq_name,
            message_retention_seconds=spec.dlq_retention_seconds,
            sqs_managed_sse_enabled=True,
        )
        queue = SqsQueue(
            self,
            "queue",
            name=spec.queue_name,
            visibility_timeout_seconds=spec.visibility_timeout_seconds,
            message_retention_seconds=spec.queue_retention_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            sqs_managed_sse_enabled=True,
            redrive_policy=json.dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": spec.max_receive_count}
            ),
            # Inline (the queue's ARN built from its name): one resource, one apply round trip.
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "InputTopicDelivers",
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": arns.sqs(spec.queue_name),
                            "Condition": {"ArnEquals": {"aws:SourceArn": spec.input_topic_arn}},
                        }
                    ],
                }
            ),
        )
        SnsTopicSubscription(
            self,
            "subscription",
            topic_arn=spec.input_topic_arn,
            protocol="sqs",
            endpoint=queue.arn,
            raw_message_delivery=True,
            filter_policy_scope="MessageAttributes",
            filter_policy=json.dumps(dict(spec.filter_policy)),
        )
        role = IamRole(
            self, "role", name=spec.role_name, assume_role_policy=iam.pod_identity_trust()
        )
        IamRolePolicy(
            self,
            "role-policy",
            name="queue-agent",
            role=role.id,
            policy=agent_policy(spec, queue.arn, arns),
        )
        self.outputs = RuntimeQueueOutputs(
            queue_url=queue.url,
            queue_arn=queue.arn,
            dlq_url=dlq.url,
            dlq_arn=dlq.arn,
            role_arn=role.arn,
            role_name=role.name,
        )


def agent_policy(spec: RuntimeQueueSpec, queue_arn: str, arns: Arns) -> str:
    """Exactly what a runtime's pods do, on exactly its resources."""
    return iam.document(
        iam.allow(
            [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
            ],
            [queue_arn],
            sid="ConsumeOwnQueue",
        ),
        iam.allow(
            ["s3:GetObject", "s3:ListBucket"],
            [arns.bucket(spec.model_bucket), arns.objects(spec.model_bucket)],
            sid="ReadModels",
        ),
        # GetObject: claim-checked task content and the idempotency check on redelivery.
        # PutObject also covers a multipart upload's create, parts and complete (large
        # outputs); aborting one is its own action.
        iam.allow(
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            [arns.objects(spec.output_bucket)],
            sid="WriteOutputs",
        ),
        iam.allow(["sns:Publish"], [spec.output_topic_arn], sid="PublishResults"),
        iam.allow(
            ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            [spec.status_table_arn],
            sid="UpdateStatusRows",
        ),
        iam.xray_write(),
    )
