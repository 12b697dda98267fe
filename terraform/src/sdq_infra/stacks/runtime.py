"""A `runtime-<name>` stack per configured runtime: its queue, DLQ, subscription and role.

Topic, table and bucket ARNs are built from their names (sdq_contracts.naming), so a runtime
stack plans before routing exists. It also grants KEDA's role (cluster stack) its queue, so the
cluster stack never lists runtimes; the API's runtime list is routing's, and `apply` re-applies
routing after any runtime stack it applies (sdq_infra.selection).
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, RuntimeConfig
from sdq_infra import names
from sdq_infra.components.platform_roles import keda_policy
from sdq_infra.components.runtime_queue import RuntimeQueue, RuntimeQueueSpec
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class RuntimeStack(SdqStack):
    def __init__(
        self,
        scope: Construct,
        cfg: DeploymentConfig,
        options: InfraOptions,
        runtime: RuntimeConfig,
    ) -> None:
        super().__init__(scope, names.runtime_stack_id(runtime), cfg, options)
        arns = self.arns
        queue = RuntimeQueue(
            self,
            "runtime",
            RuntimeQueueSpec(
                queue_name=naming.queue_name(cfg, runtime),
                dlq_name=naming.dlq_name(cfg, runtime),
                visibility_timeout_seconds=naming.queue_visibility_timeout(runtime),
                task_timeout_seconds=runtime.task_timeout_seconds,
                max_receive_count=runtime.max_receive_count,
                queue_retention_seconds=naming.QUEUE_RETENTION_SECONDS,
                dlq_retention_seconds=naming.DLQ_RETENTION_SECONDS,
                filter_policy=naming.filter_policy(runtime),
                input_topic_arn=arns.sns(naming.input_topic_name(cfg)),
                role_name=names.runtime_role_name(cfg, runtime),
                model_bucket=cfg.buckets.models,
                output_bucket=cfg.buckets.outputs,
                output_topic_arn=arns.sns(naming.output_topic_name(cfg)),
                status_table_arn=arns.dynamodb_table(naming.status_table_name(cfg)),
            ),
            arns,
        ).outputs
        if not options.emulator:
            # The emulator has no EKS; everywhere else the role is bound to the pods' account.
            EksPodIdentityAssociation(
                self,
                "pod-identity",
                cluster_name=naming.cluster_name(cfg),
                namespace=naming.workload_namespace(cfg),
                service_account=naming.service_account_name(runtime),
                role_arn=queue.role_arn,
            )
            # KEDA scales the runtime on its queue depth: the grant lives here, beside the
            # queue, so `make apply STACKS=runtime-<name>` leaves a runtime KEDA can scale.
            IamRolePolicy(
                self,
                "keda-queue-depth",
                name=f"queue-depth-{runtime.name}",
                role=names.role_name(cfg, "keda-operator"),
                policy=keda_policy([queue.queue_arn]),
            )
        self.output("queue_url", queue.queue_url, "SDQ_QUEUE_URL")
        self.output("queue_arn", queue.queue_arn, "the runtime's queue (KEDA scales on it)")
        self.output(
            "queue_name", naming.queue_name(cfg, runtime), "KEDA aws-sqs-queue queueURL name"
        )
        self.output("dlq_url", queue.dlq_url, "dead-letter queue")
        self.output("role_arn", queue.role_arn, "role of the runtime's service account")
        self.output(
            "service_account", naming.service_account_name(runtime), "Kubernetes service account"
        )
        self.output("namespace", naming.workload_namespace(cfg), "Kubernetes namespace")
        self.output("model_bucket", cfg.buckets.models, "SDQ_MODEL_BUCKET")
        self.output("output_bucket", cfg.buckets.outputs, "SDQ_OUTPUT_BUCKET")
        self.output(
            "result_topic_arn", arns.sns(naming.output_topic_name(cfg)), "SDQ_RESULT_TOPIC_ARN"
        )
        self.output("status_table", naming.status_table_name(cfg), "SDQ_STATUS_TABLE")
        self.output(
            "task_timeout_seconds", runtime.task_timeout_seconds, "SDQ_TASK_TIMEOUT_SECONDS"
        )
        self.output("max_receive_count", runtime.max_receive_count, "SDQ_MAX_RECEIVE_COUNT")
        self.output("region", cfg.region, "AWS_REGION")
