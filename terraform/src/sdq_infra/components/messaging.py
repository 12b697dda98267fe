"""The task-routing backbone: input and output SNS topics and the task-status table."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
    DynamodbTableTtl,
)
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from constructs import Construct

# The AWS managed SNS key: encrypted at rest with no key policy to maintain. Publishers in the
# account may use it through SNS; SQS subscribers receive plaintext.
SNS_MANAGED_KEY = "alias/aws/sns"


@dataclass(frozen=True)
class MessagingSpec:
    input_topic: str
    output_topic: str
    status_table: str
    hash_key: str
    ttl_attribute: str


@dataclass(frozen=True)
class MessagingOutputs:
    input_topic_arn: str
    output_topic_arn: str
    status_table_name: str
    status_table_arn: str


class Messaging(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: MessagingSpec) -> None:
        super().__init__(scope, construct_id)
        topics = {
            key: SnsTopic(
                self,
                key,
                name=name,
                kms_master_key_id=SNS_MANAGED_KEY,
                tracing_config="Active",
            )
            for key, name in (("input", spec.input_topic), ("output", spec.output_topic))
        }
        table = DynamodbTable(
            self,
            "status",
            name=spec.status_table,
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.hash_key,
            attribute=[DynamodbTableAttribute(name=spec.hash_key, type="S")],
            ttl=DynamodbTableTtl(attribute_name=spec.ttl_attribute, enabled=True),
            server_side_encryption=DynamodbTableServerSideEncryption(enabled=True),
            point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
            deletion_protection_enabled=False,
        )
        self.outputs = MessagingOutputs(
            input_topic_arn=topics["input"].arn,
            output_topic_arn=topics["output"].arn,
            status_table_name=table.name,
            status_table_arn=table.arn,
        )
