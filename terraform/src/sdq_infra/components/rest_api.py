"""The REST API in front of the api_validator Lambda: API keys, usage-plan throttle, access
logs and X-Ray tracing on one stage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.api_gateway_account import ApiGatewayAccount
from cdktf_cdktf_provider_aws.api_gateway_api_key import ApiGatewayApiKey
from cdktf_cdktf_provider_aws.api_gateway_deployment import ApiGatewayDeployment
from cdktf_cdktf_provider_aws.api_gateway_integration import ApiGatewayIntegration
from cdktf_cdktf_provider_aws.api_gateway_method import ApiGatewayMethod
from cdktf_cdktf_provider_aws.api_gateway_method_settings import (
    ApiGatewayMethodSettings,
    ApiGatewayMethodSettingsSettings,
)
from cdktf_cdktf_provider_aws.api_gateway_resource import ApiGatewayResource
from cdktf_cdktf_provider_aws.api_gateway_rest_api import (
    ApiGatewayRestApi,
    ApiGatewayRestApiEndpointConfiguration,
)
from cdktf_cdktf_provider_aws.api_gateway_stage import (
    ApiGatewayStage,
    ApiGatewayStageAccessLogSettings,
)
from cdktf_cdktf_provider_aws.api_gateway_usage_plan import (
    ApiGatewayUsagePlan,
    ApiGatewayUsagePlanApiStages,
    ApiGatewayUsagePlanThrottleSettings,
)
from cdktf_cdktf_provider_aws.api_gateway_usage_plan_key import ApiGatewayUsagePlanKey
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from constructs import Construct

from sdq_contracts.config import Throttle
from sdq_infra import iam

# (path below the root, HTTP method): every route the API serves, all proxied to one Lambda.
ROUTES: tuple[tuple[str, str], ...] = (
    ("v1alpha1", "POST"),
    ("v1alpha2", "POST"),
    ("v1alpha2/tasks/{id}", "GET"),
    ("v1alpha2/tasks/{id}", "DELETE"),
)

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "xrayTraceId": "$context.xrayTraceId",
        "ip": "$context.identity.sourceIp",
        "apiKeyId": "$context.identity.apiKeyId",
        "method": "$context.httpMethod",
        "path": "$context.resourcePath",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
        "integrationStatus": "$context.integration.status",
        "error": "$context.error.message",
    },
    separators=(",", ":"),
)


@dataclass(frozen=True)
class RestApiSpec:
    name: str
    stage: str
    throttle: Throttle
    function_name: str
    function_invoke_arn: str
    # API Gateway writes access logs through one role per account and region; sdq sets it
    # unless the account already manages it elsewhere.
    logging_role_name: str | None
    # Log groups API Gateway may write to (the account-wide role serves every API's stages).
    log_groups_arn: str
    log_retention_days: int = 30


@dataclass(frozen=True)
class RestApiOutputs:
    api_id: str
    invoke_url: str
    api_key_id: str
    api_key_value: str


class RestApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: RestApiSpec) -> None:
        super().__init__(scope, construct_id)
        api = ApiGatewayRestApi(
            self,
            "api",
            name=spec.name,
            endpoint_configuration=ApiGatewayRestApiEndpointConfiguration(types=["REGIONAL"]),
            api_key_source="HEADER",
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        resources: dict[str, ApiGatewayResource] = {}
        methods: list[ApiGatewayMethod] = []
        integrations: list[ApiGatewayIntegration] = []
        for path, http_method in ROUTES:
            resource = self._resource(api, resources, path)
            construct_id_base = (
                f"{path}-{http_method}".replace("/", "-").replace("{", "").replace("}", "")
            )
            method = ApiGatewayMethod(
                self,
                f"method-{construct_id_base}",
                rest_api_id=api.id,
                resource_id=resource.id,
                http_method=http_method,
                authorization="NONE",
                api_key_required=True,
                request_parameters={"method.request.path.id": True} if "{id}" in path else None,
            )
            methods.append(method)
            integrations.append(
                ApiGatewayIntegration(
                    self,
                    f"integration-{construct_id_base}",
                    rest_api_id=api.id,
                    resource_id=resource.id,
                    http_method=method.http_method,
                    type="AWS_PROXY",
                    integration_http_method="POST",
                    uri=spec.function_invoke_arn,
                )
            )
        deployment = ApiGatewayDeployment(
            self,
            "deployment",
            rest_api_id=api.id,
            # Redeploy whenever a route changes; create the new deployment before dropping the
            # old one so the stage never points at nothing.
            triggers={"routes": hashlib.sha256(json.dumps(ROUTES).encode()).hexdigest()},
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
            depends_on=[*methods, *integrations],
        )
        access_logs = CloudwatchLogGroup(
            self,
            "access-logs",
            name=f"/aws/apigateway/{spec.name}",
            retention_in_days=spec.log_retention_days,
        )
        stage_dependencies: list[ApiGatewayAccount] = []
        if spec.logging_role_name is not None:
            stage_dependencies.append(self._account_logging(spec, spec.logging_role_name))
        stage = ApiGatewayStage(
            self,
            "stage",
            depends_on=stage_dependencies,
            rest_api_id=api.id,
            deployment_id=deployment.id,
            stage_name=spec.stage,
            xray_tracing_enabled=True,
            access_log_settings=ApiGatewayStageAccessLogSettings(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
        )
        # Execution logs for errors and per-method metrics on every route of the stage.
        ApiGatewayMethodSettings(
            self,
            "method-settings",
            rest_api_id=api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings=ApiGatewayMethodSettingsSettings(
                logging_level="ERROR", metrics_enabled=True, data_trace_enabled=False
            ),
        )
        plan = ApiGatewayUsagePlan(
            self,
            "usage-plan",
            name=f"{spec.name}-default",
            api_stages=[ApiGatewayUsagePlanApiStages(api_id=api.id, stage=stage.stage_name)],
            throttle_settings=ApiGatewayUsagePlanThrottleSettings(
                rate_limit=spec.throttle.rate_limit, burst_limit=spec.throttle.burst_limit
            ),
        )
        key = ApiGatewayApiKey(self, "api-key", name=f"{spec.name}-default", enabled=True)
        ApiGatewayUsagePlanKey(
            self, "usage-plan-key", key_id=key.id, key_type="API_KEY", usage_plan_id=plan.id
        )
        LambdaPermission(
            self,
            "invoke",
            statement_id="AllowApiGatewayInvoke",
            action="lambda:InvokeFunction",
            function_name=spec.function_name,
            principal="apigateway.amazonaws.com",
            source_arn=f"{api.execution_arn}/*/*",
        )
        self.outputs = RestApiOutputs(
            api_id=api.id,
            invoke_url=stage.invoke_url,
            api_key_id=key.id,
            api_key_value=key.value,
        )

    def _account_logging(self, spec: RestApiSpec, role_name: str) -> ApiGatewayAccount:
        role = IamRole(
            self,
            "cloudwatch-role",
            name=role_name,
            assume_role_policy=iam.service_trust("apigateway.amazonaws.com"),
        )
        # The actions of AWS's AmazonAPIGatewayPushToCloudWatchLogs, inline and on log groups.
        IamRolePolicy(
            self,
            "cloudwatch-role-policy",
            name="push-to-cloudwatch-logs",
            role=role.id,
            policy=iam.document(
                iam.allow(
                    [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogGroups",
                        "logs:DescribeLogStreams",
                        "logs:FilterLogEvents",
                        "logs:GetLogEvents",
                        "logs:PutLogEvents",
                    ],
                    [spec.log_groups_arn],
                    sid="PushAccessLogs",
                )
            ),
        )
        return ApiGatewayAccount(self, "account", cloudwatch_role_arn=role.arn)

    def _resource(
        self, api: ApiGatewayRestApi, resources: dict[str, ApiGatewayResource], path: str
    ) -> ApiGatewayResource:
        """The resource for ``path``, creating its missing parents on the way."""
        if path in resources:
            return resources[path]
        parent_path, _, part = path.rpartition("/")
        parent_id = (
            api.root_resource_id
            if not parent_path
            else self._resource(api, resources, parent_path).id
        )
        resource_id = "resource-" + path.replace("/", "-").replace("{", "").replace("}", "")
        resources[path] = ApiGatewayResource(
            self, resource_id, rest_api_id=api.id, parent_id=parent_id, path_part=part
        )
        return resources[path]
