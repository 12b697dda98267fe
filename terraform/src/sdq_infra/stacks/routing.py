"""The `routing` stack: the REST API and the api_validator Lambda behind it, the input and
output topics, the task-status table and the output bucket."""

from __future__ import annotations

from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, runtimes_env
from sdq_infra import iam, names
from sdq_infra.components.buckets import BucketSpec, PrivateBucket
from sdq_infra.components.lambda_function import FunctionSpec, PythonFunction
from sdq_infra.components.messaging import Messaging, MessagingSpec
from sdq_infra.components.rest_api import RestApi, RestApiSpec
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class RoutingStack(SdqStack):
    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "routing", cfg, options)
        messaging = Messaging(
            self,
            "messaging",
            MessagingSpec(
                input_topic=naming.input_topic_name(cfg),
                output_topic=naming.output_topic_name(cfg),
                status_table=naming.status_table_name(cfg),
                hash_key=naming.STATUS_HASH_KEY,
                ttl_attribute=naming.STATUS_TTL_ATTRIBUTE,
            ),
        ).outputs
        outputs_bucket = PrivateBucket(
            self, "outputs", BucketSpec(name=cfg.buckets.outputs, versioned=False)
        ).outputs
        arns = self.arns
        validator = PythonFunction(
            self,
            "api-validator",
            FunctionSpec(
                name=names.api_validator_function_name(cfg),
                role_name=names.role_name(cfg, "api-validator"),
                handler=names.API_VALIDATOR_HANDLER,
                artifact=options.lambda_artifact("api_validator"),
                environment={
                    "SDQ_RUNTIMES": runtimes_env(cfg.runtimes),
                    "SDQ_INPUT_TOPIC_ARN": messaging.input_topic_arn,
                    "SDQ_STATUS_TABLE": messaging.status_table_name,
                    "SDQ_OUTPUT_BUCKET": outputs_bucket.name,
                    "SDQ_MAX_BODY_BYTES": str(cfg.api.max_body_bytes),
                    "SDQ_CLAIM_CHECK_BYTES": str(cfg.api.claim_check_bytes),
                    "SDQ_STATUS_TTL_DAYS": str(cfg.api.status_ttl_days),
                    "SDQ_DOWNLOAD_LINK_SECONDS": str(cfg.downloads.link_seconds),
                },
                collector_layer_arn=cfg.observability.lambda_collector_layer_arn,
                statements=(
                    iam.allow(["sns:Publish"], [messaging.input_topic_arn], sid="PublishTasks"),
                    iam.allow(
                        # DeleteItem: a task whose publish failed is forgotten, so a retry is new.
                        [
                            "dynamodb:DeleteItem",
                            "dynamodb:GetItem",
                            "dynamodb:PutItem",
                            "dynamodb:UpdateItem",
                        ],
                        [messaging.status_table_arn],
                        sid="StatusRows",
                    ),
                    # Claim check: large task bodies are stored in the output bucket.
                    iam.allow(
                        ["s3:PutObject"], [arns.objects(cfg.buckets.outputs)], sid="ClaimCheck"
                    ),
                    # Download links: a pre-signed URL acts with the signer's permissions, so the
                    # status answer's links need GetObject on the outputs (the Lambda itself
                    # never reads them). The bucket's SSE-KMS key is the AWS managed aws/s3 key,
                    # whose key policy lets the account's principals decrypt through S3: no
                    # kms:Decrypt statement is needed (a customer managed key would need one).
                    iam.allow(
                        ["s3:GetObject"],
                        [arns.objects(cfg.buckets.outputs)],
                        sid="SignDownloadLinks",
                    ),
                ),
            ),
            arns,
        ).outputs
        api = RestApi(
            self,
            "api",
            RestApiSpec(
                name=names.rest_api_name(cfg),
                stage=names.API_STAGE,
                throttle=cfg.api.throttle,
                function_name=validator.name,
                function_invoke_arn=validator.invoke_arn,
                account_logging=cfg.api.account_logging,
                logging_role_name=names.role_name(cfg, "apigateway-logs"),
                log_groups_arn=arns.log_group("*"),
            ),
        ).outputs
        self.output("api_url", api.invoke_url, "base URL of the API (append /v1alpha2)")
        self.output("api_key_id", api.api_key_id, "id of the default API key")
        self.output("api_key", api.api_key_value, "the default API key", sensitive=True)
        self.output(
            "input_topic_arn", messaging.input_topic_arn, "SNS topic tasks are published to"
        )
        self.output("output_topic_arn", messaging.output_topic_arn, "SDQ_RESULT_TOPIC_ARN")
        self.output("status_table", messaging.status_table_name, "SDQ_STATUS_TABLE")
        self.output("output_bucket", outputs_bucket.name, "SDQ_OUTPUT_BUCKET")
        self.output("api_validator_function", validator.name, "api_validator Lambda")
