"""Names of the AWS resources sdq creates, derived from the deployment config.

One source of truth for the cdktf stacks (terraform/) and the local provisioning module, so a
local stack and a cloud deployment never drift apart.
"""

from __future__ import annotations

from typing import Any

from sdq_contracts.config import DeploymentConfig, RuntimeConfig
from sdq_contracts.messages import ATTR_RUNTIME


def input_topic_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-tasks"


def output_topic_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-results"


def status_table_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-task-status"


def queue_name(cfg: DeploymentConfig, runtime: RuntimeConfig) -> str:
    return f"{cfg.stack_name}-{runtime.name}-tasks"


def dlq_name(cfg: DeploymentConfig, runtime: RuntimeConfig) -> str:
    return f"{cfg.stack_name}-{runtime.name}-dlq"


def queue_visibility_timeout(runtime: RuntimeConfig) -> int:
    """The queue's default visibility: one task timeout plus a minute of slack for upload.

    The agent heartbeats visibility while it holds a task, so this only bounds how long a task
    held by a dead agent stays invisible.
    """
    return min(runtime.task_timeout_seconds + 60, 43_200)


# Dead-lettered tasks are kept as long as SQS allows so an operator can inspect and redrive.
DLQ_RETENTION_SECONDS = 1_209_600
QUEUE_RETENTION_SECONDS = 345_600
# Status rows use this attribute for DynamoDB TTL.
STATUS_TTL_ATTRIBUTE = "expires_at"
STATUS_HASH_KEY = "id"


def filter_policy(runtime: RuntimeConfig) -> dict[str, Any]:
    """SNS subscription filter of a runtime's queue.

    The API resolves every task, v1alpha1 model routing included, to exactly one runtime and
    sets the `runtime` attribute, so one attribute match routes everything and no task can
    reach two queues.
    """
    return {ATTR_RUNTIME: [runtime.name]}


def service_account_name(runtime: RuntimeConfig) -> str:
    return f"sdq-{runtime.name}"


def cluster_name(cfg: DeploymentConfig) -> str:
    return cfg.stack_name


def gpu_nodepool_name(cfg: DeploymentConfig, runtime: RuntimeConfig) -> str:
    """One Karpenter NodePool per runtime (its own instance and capacity types)."""
    return f"{cfg.stack_name}-{runtime.name}-gpu"


# Tags every GPU node carries (set by the EC2NodeClass); model_sync targets exactly these.
NODE_TAG_CLUSTER = "sdq:cluster"
NODE_TAG_ROLE = "sdq:node-role"
NODE_ROLE_GPU = "gpu"

# Where a GPU node keeps its copy of the model bucket: a directory on the instance-store RAID0
# array that Karpenter's `instanceStorePolicy: RAID0` builds and mounts. Runtime pods mount it
# read-only; only the node sync script writes it.
MODEL_CACHE_HOST_PATH = "/mnt/k8s-disks/0/sdq-models"


# In-cluster identities bound to IAM roles by EKS Pod Identity. Terraform creates each
# association (namespace + service account -> role); the service account itself comes from the
# k8s overlays (runtimes, collector) or from the Helm chart that installs the component
# (Karpenter, KEDA: k8s/README.md passes these names to Helm explicitly).
KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
KEDA_NAMESPACE = "keda"
KEDA_SERVICE_ACCOUNT = "keda-operator"
# Not of the form sdq-<name>, so no runtime's account (service_account_name) can take it.
COLLECTOR_SERVICE_ACCOUNT = "otel-collector"


# Limits of the names derived from a runtime's name.
SQS_NAME_LIMIT = 80
K8S_LABEL_VALUE_LIMIT = 63
K8S_NAME_LIMIT = 253
# Kubernetes objects of a runtime are named "<runtime>-<object>" (kustomize namePrefix; the
# longest today is "-keda-aws") and such names also appear as label values: keep this room.
K8S_OBJECT_SUFFIX_RESERVE = 16


def runtime_derived_names(
    cfg: DeploymentConfig, runtime: RuntimeConfig
) -> dict[str, tuple[str, int]]:
    """Every name derived from a runtime's name, with the limit it must fit (config validation
    refuses a runtime whose name makes any of them too long)."""
    return {
        "queue name": (queue_name(cfg, runtime), SQS_NAME_LIMIT),
        "dead-letter queue name": (dlq_name(cfg, runtime), SQS_NAME_LIMIT),
        "Kubernetes service account": (service_account_name(runtime), K8S_LABEL_VALUE_LIMIT),
        # Karpenter labels its nodes karpenter.sh/nodepool=<NodePool name>: a label value.
        "Karpenter NodePool (a label value)": (
            gpu_nodepool_name(cfg, runtime),
            K8S_LABEL_VALUE_LIMIT,
        ),
        "Kubernetes name prefix (<runtime>-<object>)": (
            runtime.name,
            K8S_LABEL_VALUE_LIMIT - K8S_OBJECT_SUFFIX_RESERVE,
        ),
    }


def workload_namespace(cfg: DeploymentConfig) -> str:
    """Namespace of sdq's own pods: every runtime's workers and the OpenTelemetry collector."""
    return cfg.cluster.namespace


def queue_agent_repository_name(cfg: DeploymentConfig) -> str:
    """ECR repository of the queue agent image (Terraform creates it; releases push to it)."""
    return f"{cfg.stack_name}/queue-agent"
