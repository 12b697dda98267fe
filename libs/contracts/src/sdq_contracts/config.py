"""Deployment config: the one file (`config.yaml`) every stack, overlay and the local stack read.

Validation errors are reported per field (``runtimes[1].type: ...``) so a user can fix the
file without reading a traceback.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Runtime names become Kubernetes object names and label values, SQS queue names and IAM names
# (sdq_contracts.naming.runtime_derived_names lists each with its limit): a DNS label.
RUNTIME_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
STACK_PATTERN = r"^[a-z][a-z0-9-]{1,23}$"
# Lambda refuses synchronous invocations whose event exceeds 6 MB (6,291,456 bytes); the API
# Gateway event wraps the body in JSON with headers and request context, and escapes its
# quotes, so bodies are capped at 5 MiB. Larger inputs travel by reference (s3:// or https URL).
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_BODY_BYTES_LIMIT = 5 * 1024 * 1024
# SQS caps the visibility timeout at 12 hours; a task must fit inside one heartbeat window.
MAX_TASK_TIMEOUT_SECONDS = 43_200


class RuntimeType(StrEnum):
    SDWEBUI = "sdwebui"
    COMFYUI = "comfyui"
    INVOKEAI = "invokeai"


class CapacityType(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


class _Frozen(BaseModel):
    # defer_build: a model's validator is built on first use, not at import (Lambda cold start).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Throttle(_Frozen):
    """API Gateway usage-plan throttle (and the local front door's token bucket)."""

    rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 30.0
    burst_limit: Annotated[int, Field(ge=1, le=5_000)] = 50


class ApiConfig(_Frozen):
    throttle: Throttle = Throttle()
    # Bodies above this are refused with 413. At most MAX_BODY_BYTES_LIMIT (Lambda's 6 MB
    # synchronous payload limit applies to the whole API Gateway event); larger inputs
    # (images) are passed as s3:// or https:// references instead of inline base64.
    max_body_bytes: Annotated[int, Field(ge=1024, le=MAX_BODY_BYTES_LIMIT)] = MAX_BODY_BYTES_LIMIT
    # API Gateway writes access and execution logs through ONE CloudWatch role per account and
    # region (an account-wide setting). "sdq": sdq creates the role and sets it (replacing any
    # role already set); "existing": the account already has one, sdq only turns stage logging
    # on; "off": no API Gateway logs (nothing account-wide is touched).
    account_logging: Literal["sdq", "existing", "off"] = "off"
    # Task messages above this are stored in the output bucket and referenced (claim check);
    # SNS refuses messages over 256 KiB, attributes included.
    claim_check_bytes: Annotated[int, Field(ge=1024, le=240_000)] = 200_000
    # Days a task status row is kept (DynamoDB TTL).
    status_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 30


# A SigV4 pre-signed URL is valid for at most 7 days.
MAX_DOWNLOAD_LINK_SECONDS = 604_800


class DownloadsConfig(_Frozen):
    """Pre-signed HTTPS download links of task outputs (in the notification, the webhook body and
    every status answer), so a client without AWS credentials can fetch them."""

    # Lifetime written into each link (X-Amz-Expires). A link carries the permissions AND the
    # lifetime of the credentials that signed it: the agent signs with its pod's role session
    # (EKS Pod Identity) and the API with the Lambda's execution role session, both temporary,
    # and S3 refuses a link once the session that signed it has expired, whatever this says
    # (AWS S3 user guide, "Download and upload objects with presigned URLs": with temporary
    # credentials a presigned URL expires when the credentials do). botocore renews those
    # credentials when less than 15 minutes remain (10 minutes at the latest), so a link may stop
    # working as soon as ~10 minutes after it was issued. GET /v1alpha2/tasks/{id} signs fresh
    # links on every call: a client whose link stopped working asks again.
    link_seconds: Annotated[int, Field(ge=60, le=MAX_DOWNLOAD_LINK_SECONDS)] = 3600


class Buckets(_Frozen):
    models: Annotated[str, Field(pattern=BUCKET_PATTERN)]
    outputs: Annotated[str, Field(pattern=BUCKET_PATTERN)]


class Scaling(_Frozen):
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 0
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 5
    # Queued tasks per pod KEDA aims for; 1 means "one pod per waiting task" up to the max.
    target_backlog_per_pod: Annotated[int, Field(ge=1, le=1000)] = 1
    # Backlog at which scaling from zero starts.
    activation_backlog: Annotated[int, Field(ge=0, le=1000)] = 0
    # Seconds KEDA waits after the last activity before scaling to min_replicas.
    cooldown_seconds: Annotated[int, Field(ge=0, le=86_400)] = 600

    @model_validator(mode="after")
    def _max_not_below_min(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class RuntimeConfig(_Frozen):
    name: Annotated[str, Field(pattern=RUNTIME_NAME_PATTERN, max_length=63)]
    type: RuntimeType
    # Static model file loaded by the runtime at start-up (SD WebUI checkpoint title/filename);
    # mutually exclusive with dynamic_model, where each task names its model.
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    dynamic_model: bool = False
    # Container image of the runtime (the user's); pinned by tag or digest.
    image: Annotated[str, Field(min_length=1)] | None = None
    scaling: Scaling = Scaling()
    instance_types: Annotated[tuple[str, ...], Field(min_length=1)] = ("g5.xlarge", "g6.xlarge")
    # Order is preference: spot first, on-demand as fallback.
    capacity_types: Annotated[tuple[CapacityType, ...], Field(min_length=1)] = (
        CapacityType.SPOT,
        CapacityType.ON_DEMAND,
    )
    task_timeout_seconds: Annotated[int, Field(ge=10, le=MAX_TASK_TIMEOUT_SECONDS)] = 300
    # A task interrupted at its deadline fails permanently unless this asks for retries (each
    # retry may cost another full task_timeout_seconds of GPU).
    retry_on_deadline: bool = False
    # Receives before a task is dead-lettered (the SQS redrive policy).
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 3

    @model_validator(mode="after")
    def _one_model_mode(self) -> Self:
        if self.dynamic_model and self.model is not None:
            raise ValueError(
                "set either 'model' (a static model file) or 'dynamic_model: true', not both"
            )
        if not self.dynamic_model and self.model is None:
            raise ValueError("set 'model' (a static model file) or 'dynamic_model: true'")
        return self

    @field_validator("capacity_types")
    @classmethod
    def _unique_capacity(cls, value: tuple[CapacityType, ...]) -> tuple[CapacityType, ...]:
        if len(set(value)) != len(value):
            raise ValueError("capacity types must not repeat")
        return value

    @field_validator("instance_types")
    @classmethod
    def _instance_type_shape(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            family, dot, size = item.partition(".")
            if not dot or not family or not size:
                raise ValueError(f"'{item}' is not an EC2 instance type like 'g5.xlarge'")
        return value


class ExistingVpc(_Frozen):
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")]
    private_subnet_ids: Annotated[tuple[str, ...], Field(min_length=2)]
    public_subnet_ids: tuple[str, ...] = ()


class NetworkConfig(_Frozen):
    vpc_cidr: str = "10.0.0.0/16"
    # "single": one NAT gateway for all AZs (cheap); "per_az": one per AZ (no cross-AZ outage).
    nat: Literal["single", "per_az", "none"] = "single"
    availability_zones: Annotated[int, Field(ge=2, le=6)] = 3
    existing_vpc: ExistingVpc | None = None

    @model_validator(mode="after")
    def _egress(self) -> Self:
        # Nodes of a new VPC reach ECR, STS, EKS, SQS... through the NAT gateway; without one
        # they could not pull images or join the cluster. "none" is for an existing VPC whose
        # own routes or VPC endpoints provide that egress.
        if self.nat == "none" and self.existing_vpc is None:
            raise ValueError(
                "nat: none is only allowed with existing_vpc (a VPC whose routes or VPC "
                "endpoints give nodes egress); a new VPC needs nat: single or per_az"
            )
        return self

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a CIDR block") from exc
        if net.version != 4 or net.prefixlen > 16:
            raise ValueError("vpc_cidr must be an IPv4 block of /16 or larger")
        return value


class ClusterConfig(_Frozen):
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = "1.33"
    system_instance_types: Annotated[tuple[str, ...], Field(min_length=1)] = ("m6i.large",)
    system_node_count: Annotated[int, Field(ge=1, le=10)] = 2
    # IAM principals granted cluster-admin through EKS access entries. The principal running
    # `make apply` is already admin (EKS bootstraps the cluster creator): do not list it here.
    admin_principal_arns: tuple[str, ...] = ()
    # CIDR blocks allowed to reach the public Kubernetes API endpoint (requests are still
    # authenticated by IAM). The default is anywhere; narrow it to your office/VPN ranges.
    # An empty list makes the endpoint private only: kubectl and `make apply`'s platform step
    # must then run from inside the VPC (or over a VPN/peering into it).
    public_access_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = "sdq"

    @field_validator("public_access_cidrs")
    @classmethod
    def _public_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                net = ipaddress.ip_network(item)
            except ValueError as exc:
                raise ValueError(f"'{item}' is not a CIDR block") from exc
            if net.version != 4:
                raise ValueError(f"'{item}' is not an IPv4 CIDR block")
        return value

    @property
    def private_endpoint_only(self) -> bool:
        return not self.public_access_cidrs


class ObservabilityConfig(_Frozen):
    # The AWS Distro for OpenTelemetry collector Lambda layer of your region
    # (arn:aws:lambda:<region>:901920570463:layer:aws-otel-collector-amd64-ver-...:N). When set,
    # both Lambdas run the collector as an extension and export their spans to it over OTLP, so
    # the API's spans (validate, status, publish) and model sync's reach X-Ray too.
    lambda_collector_layer_arn: (
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[\w-]+:\d+$")]
        | None
    ) = None


class DeploymentConfig(_Frozen):
    stack_name: Annotated[str, Field(pattern=STACK_PATTERN)]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    buckets: Buckets
    api: ApiConfig = ApiConfig()
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    downloads: DownloadsConfig = DownloadsConfig()
    runtimes: Annotated[tuple[RuntimeConfig, ...], Field(min_length=1)]

    @field_validator("runtimes")
    @classmethod
    def _unique_names(cls, value: tuple[RuntimeConfig, ...]) -> tuple[RuntimeConfig, ...]:
        seen: set[str] = set()
        for runtime in value:
            if runtime.name in seen:
                raise ValueError(f"runtime name '{runtime.name}' is used more than once")
            seen.add(runtime.name)
        return value

    @model_validator(mode="after")
    def _derived_names_fit(self) -> Self:
        from sdq_contracts.naming import runtime_derived_names  # noqa: PLC0415 - imports us

        for runtime in self.runtimes:
            for what, (name, limit) in runtime_derived_names(self, runtime).items():
                if len(name) > limit:
                    raise ValueError(
                        f"runtime name '{runtime.name}' is too long: its {what} "
                        f"'{name}' has {len(name)} characters, the limit is {limit}"
                    )
        return self

    def runtime(self, name: str) -> RuntimeConfig | None:
        return next((r for r in self.runtimes if r.name == name), None)


def runtimes_env(runtimes: Iterable[RuntimeConfig]) -> str:
    """SDQ_RUNTIMES of the api_validator: compact JSON, one routing entry per runtime.

    Terraform sets it on the Lambda and the local stack on its in-process API; the api_validator
    parses it back into :class:`RuntimeConfig` objects (the fields not listed take defaults).
    """
    return json.dumps(
        [
            {
                "name": runtime.name,
                "type": runtime.type.value,
                "model": runtime.model,
                "dynamic_model": runtime.dynamic_model,
            }
            for runtime in runtimes
        ],
        separators=(",", ":"),
    )


class ConfigError(ValueError):
    """The deployment config is invalid; ``errors`` lists ``(field path, message)`` pairs."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {loc}: {msg}" for loc, msg in errors)
        super().__init__(f"invalid deployment config {source}:\n{lines}")


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> DeploymentConfig:
    """Validate an already-parsed mapping; raises ConfigError with one entry per bad field."""
    try:
        return DeploymentConfig.model_validate(data)
    except ValidationError as exc:
        errors = [(_loc(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError(source, errors) from None


def load_config(path: str | Path) -> DeploymentConfig:
    import yaml  # noqa: PLC0415 - only config-file readers pay for the YAML parser

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [("(yaml)", str(exc))]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(str(path), [("(root)", "expected a mapping of settings")])
    return parse_config(data, str(path))
