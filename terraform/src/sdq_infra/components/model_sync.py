"""The model bucket and the model_sync Lambda its events trigger.

The Lambda asks every GPU node of the cluster (found by tag) to re-sync its instance-store
model cache through SSM Run Command. Its permissions stop at exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from cdktf_cdktf_provider_aws.s3_bucket_notification import (
    S3BucketNotification,
    S3BucketNotificationLambdaFunction,
)
from constructs import Construct

from sdq_infra import iam
from sdq_infra.components.buckets import BucketSpec, PrivateBucket
from sdq_infra.components.lambda_function import FunctionSpec, PythonFunction
from sdq_infra.iam import Arns, Statement
from sdq_infra.options import LambdaArtifact

RUN_SHELL_DOCUMENT = "AWS-RunShellScript"
MODEL_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


@dataclass(frozen=True)
class ModelSyncSpec:
    bucket: str
    function_name: str
    role_name: str
    handler: str
    artifact: LambdaArtifact
    cluster_name: str
    node_tag_key: str
    cache_path: str
    collector_layer_arn: str | None = None


@dataclass(frozen=True)
class ModelSyncOutputs:
    bucket_name: str
    bucket_arn: str
    function_name: str
    function_arn: str


def sync_statements(spec: ModelSyncSpec, arns: Arns) -> tuple[Statement, ...]:
    return (
        # The document may be run at all; the instances it runs on are constrained below.
        iam.allow(
            ["ssm:SendCommand"], [arns.ssm_document(RUN_SHELL_DOCUMENT)], sid="RunShellDocument"
        ),
        iam.allow(
            ["ssm:SendCommand"],
            [arns.ec2("instance")],
            sid="OnlyThisClustersNodes",
            condition={"StringEquals": {f"ssm:resourceTag/{spec.node_tag_key}": spec.cluster_name}},
        ),
        # These APIs have no resource-level permissions.
        iam.allow(
            [
                "ec2:DescribeInstances",
                "ssm:GetCommandInvocation",
                "ssm:ListCommandInvocations",
            ],
            ["*"],
            sid="FindNodesAndFollowCommands",
        ),
        iam.allow(
            ["s3:GetBucketNotification"], [arns.bucket(spec.bucket)], sid="ReadModelEventsConfig"
        ),
    )


class ModelSync(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, spec: ModelSyncSpec, arns: Arns
    ) -> None:
        super().__init__(scope, construct_id)
        bucket = PrivateBucket(self, "models", BucketSpec(name=spec.bucket, versioned=True))
        function = PythonFunction(
            self,
            "lambda",
            FunctionSpec(
                name=spec.function_name,
                role_name=spec.role_name,
                handler=spec.handler,
                artifact=spec.artifact,
                environment={
                    "SDQ_CLUSTER_NAME": spec.cluster_name,
                    "SDQ_MODEL_BUCKET": spec.bucket,
                    "SDQ_MODEL_CACHE_DIR": spec.cache_path,
                },
                statements=sync_statements(spec, arns),
                timeout_seconds=60,
                collector_layer_arn=spec.collector_layer_arn,
            ),
            arns,
        )
        permission = LambdaPermission(
            self,
            "s3-invoke",
            statement_id="AllowModelBucketEvents",
            action="lambda:InvokeFunction",
            function_name=function.outputs.name,
            principal="s3.amazonaws.com",
            source_arn=bucket.outputs.arn,
            source_account=arns.account,
        )
        S3BucketNotification(
            self,
            "events",
            bucket=bucket.bucket.id,
            lambda_function=[
                S3BucketNotificationLambdaFunction(
                    lambda_function_arn=function.outputs.arn, events=list(MODEL_EVENTS)
                )
            ],
            depends_on=[permission],
        )
        self.outputs = ModelSyncOutputs(
            bucket_name=bucket.outputs.name,
            bucket_arn=bucket.outputs.arn,
            function_name=function.outputs.name,
            function_arn=function.outputs.arn,
        )
