"""Names of infrastructure-only resources (state, IAM roles, functions, the API, the registry).

Names shared with the local stack, the services and the k8s overlays (topics, queues, table,
node tags, service accounts and namespaces, the queue agent's repository) come from
:mod:`sdq_contracts.naming`; this module only adds what nothing outside terraform/ refers to.
"""

from __future__ import annotations

import hashlib

from sdq_contracts.config import DeploymentConfig, RuntimeConfig

IAM_NAME_LIMIT = 64
BUCKET_NAME_LIMIT = 63

# Stage of the REST API; clients call https://<api>.execute-api.<region>.amazonaws.com/live/...
API_STAGE = "live"

# Lambda handlers (the fixed runtime contract).
API_VALIDATOR_HANDLER = "sdq_api_validator.handler.handle"
MODEL_SYNC_HANDLER = "sdq_model_sync.handler.handle"
LAMBDA_RUNTIME = "python3.11"


def bounded(name: str, limit: int = IAM_NAME_LIMIT) -> str:
    """``name`` if it fits ``limit``, else a prefix plus a short stable hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


def backend_key(cfg: DeploymentConfig, stack: str) -> str:
    """Key of a stack's state object in the state bucket: one state per stack."""
    return f"{cfg.stack_name}/{stack}.tfstate"


def default_state_bucket(cfg: DeploymentConfig) -> str:
    """The state bucket, derived from the (globally unique) outputs bucket name."""
    return f"{cfg.buckets.outputs[: BUCKET_NAME_LIMIT - len('-tfstate')]}-tfstate"


def role_name(cfg: DeploymentConfig, purpose: str) -> str:
    return bounded(f"{cfg.stack_name}-{purpose}")


def runtime_role_name(cfg: DeploymentConfig, runtime: RuntimeConfig) -> str:
    return bounded(f"{cfg.stack_name}-{runtime.name}-agent")


def api_validator_function_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-api-validator"


def model_sync_function_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-model-sync"


def rest_api_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-api"


def karpenter_interruption_queue_name(cfg: DeploymentConfig) -> str:
    return f"{cfg.stack_name}-karpenter-interruption"


def runtime_stack_id(runtime: RuntimeConfig) -> str:
    return f"runtime-{runtime.name}"


def runtime_image_repository_name(cfg: DeploymentConfig, runtime_type: str) -> str:
    """ECR repository of the pinned runtime images sdq builds (images/<type>/Dockerfile)."""
    return f"{cfg.stack_name}/{runtime_type}"
