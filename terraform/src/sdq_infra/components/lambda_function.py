"""A Lambda function from a built zip: its role, its log group and X-Ray active tracing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionEnvironment,
    LambdaFunctionTracingConfig,
)
from constructs import Construct

from sdq_infra import iam
from sdq_infra.iam import Arns, Statement
from sdq_infra.names import LAMBDA_RUNTIME
from sdq_infra.options import LambdaArtifact

LOG_RETENTION_DAYS = 30


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    role_name: str
    handler: str
    artifact: LambdaArtifact
    environment: Mapping[str, str]
    # What the function may do besides writing its logs and traces.
    statements: Sequence[Statement] = field(default_factory=tuple)
    memory_mb: int = 512
    timeout_seconds: int = 30
    # ADOT collector layer: the function exports its OpenTelemetry spans to it (→ X-Ray).
    collector_layer_arn: str | None = None


@dataclass(frozen=True)
class FunctionOutputs:
    name: str
    arn: str
    invoke_arn: str
    role_arn: str


class PythonFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: FunctionSpec, arns: Arns) -> None:
        super().__init__(scope, construct_id)
        log_group_name = f"/aws/lambda/{spec.name}"
        logs = CloudwatchLogGroup(
            self, "logs", name=log_group_name, retention_in_days=LOG_RETENTION_DAYS
        )
        role = IamRole(
            self,
            "role",
            name=spec.role_name,
            assume_role_policy=iam.service_trust("lambda.amazonaws.com"),
        )
        IamRolePolicy(
            self,
            "policy",
            name="function",
            role=role.id,
            policy=iam.document(
                iam.allow(
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    [arns.log_streams(log_group_name)],
                    sid="WriteOwnLogs",
                ),
                iam.xray_write(),
                *spec.statements,
            ),
        )
        function = LambdaFunction(
            self,
            "function",
            function_name=spec.name,
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            architectures=["x86_64"],
            handler=spec.handler,
            filename=str(spec.artifact.path),
            source_code_hash=spec.artifact.sha256,
            memory_size=spec.memory_mb,
            timeout=spec.timeout_seconds,
            tracing_config=LambdaFunctionTracingConfig(mode="Active"),
            layers=[spec.collector_layer_arn] if spec.collector_layer_arn else None,
            environment=LambdaFunctionEnvironment(variables=function_environment(spec)),
            depends_on=[logs],
        )
        self.function = function
        self.outputs = FunctionOutputs(
            name=function.function_name,
            arn=function.arn,
            invoke_arn=function.invoke_arn,
            role_arn=role.arn,
        )


# Where the ADOT collector extension listens inside the Lambda sandbox (OTLP over HTTP).
COLLECTOR_ENDPOINT = "http://localhost:4318"


def function_environment(spec: FunctionSpec) -> dict[str, str]:
    env = dict(spec.environment)
    if spec.collector_layer_arn:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = COLLECTOR_ENDPOINT
    return env
