"""The base every sdq stack derives from: provider, backend and ARN helpers, nothing else."""

from __future__ import annotations

from typing import Any

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.provider import (
    AwsProvider,
    AwsProviderDefaultTags,
    AwsProviderEndpoints,
)
from constructs import Construct

from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.iam import Arns
from sdq_infra.options import InfraOptions

# Services the stacks call; in emulator mode each endpoint points at the emulator.
EMULATED_SERVICES = (
    "apigateway",
    "dynamodb",
    "ec2",
    "ecr",
    "eks",
    "events",
    "iam",
    "kms",
    "lambda_",
    "logs",
    "s3",
    "sns",
    "sqs",
    "ssm",
    "sts",
)


def provider_settings(
    cfg: DeploymentConfig, options: InfraOptions, stack_id: str
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region": cfg.region,
        "default_tags": [
            AwsProviderDefaultTags(
                tags={
                    "sdq:stack": cfg.stack_name,
                    "sdq:component": stack_id,
                    "managed-by": "terraform",
                }
            )
        ],
    }
    if options.emulator_endpoint is not None:
        endpoint = options.emulator_endpoint
        settings |= {
            "access_key": "testing",
            "secret_key": "testing",
            "skip_credentials_validation": True,
            "skip_requesting_account_id": True,
            "skip_metadata_api_check": "true",
            "skip_region_validation": True,
            "s3_use_path_style": True,
            "endpoints": [AwsProviderEndpoints(**dict.fromkeys(EMULATED_SERVICES, endpoint))],
        }
    return settings


class SdqStack(TerraformStack):
    """A stack with the AWS provider and its backend applied.

    The ``state`` stack keeps its own state locally (it creates the bucket everything else uses);
    every other stack uses the S3 backend, one key per stack, locked with an S3 lock file. In
    emulator mode every stack keeps local state under the build directory.
    """

    def __init__(
        self, scope: Construct, stack_id: str, cfg: DeploymentConfig, options: InfraOptions
    ) -> None:
        super().__init__(scope, stack_id)
        self.cfg = cfg
        self.options = options
        self.stack_id = stack_id
        AwsProvider(self, "aws", **provider_settings(cfg, options, stack_id))
        if options.emulator or stack_id == "state":
            LocalBackend(self, path=str(options.local_state_dir / f"{stack_id}.tfstate"))
        else:
            S3Backend(
                self,
                bucket=options.state_bucket,
                key=names.backend_key(cfg, stack_id),
                region=cfg.region,
                encrypt=True,
            )
            # cdktf 0.21 predates S3-native locking; the override writes it into the backend.
            self.add_override("terraform.backend.s3.use_lockfile", True)
        self.arns = Arns(
            partition=DataAwsPartition(self, "partition").partition,
            region=cfg.region,
            account=DataAwsCallerIdentity(self, "caller").account_id,
        )

    def output(self, name: str, value: Any, description: str, sensitive: bool = False) -> None:
        TerraformOutput(self, name, value=value, description=description, sensitive=sensitive)
