"""sdq shared contracts (pure: pydantic and PyYAML only)."""

from sdq_contracts.config import (
    ConfigError,
    DeploymentConfig,
    RuntimeConfig,
    RuntimeType,
    load_config,
    parse_config,
)
from sdq_contracts.messages import (
    ApiVersion,
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_contracts.requests import TASK_TYPES_BY_RUNTIME, TaskType, V1Alpha1Request, V1Alpha2Request

__all__ = [
    "TASK_TYPES_BY_RUNTIME",
    "ApiVersion",
    "ConfigError",
    "DeploymentConfig",
    "ResultNotification",
    "RuntimeConfig",
    "RuntimeType",
    "StatusRecord",
    "TaskError",
    "TaskMessage",
    "TaskState",
    "TaskType",
    "V1Alpha1Request",
    "V1Alpha2Request",
    "load_config",
    "parse_config",
]
