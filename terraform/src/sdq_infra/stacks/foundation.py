"""Stacks with no sdq dependencies: the state bucket and the image registry."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, RuntimeType
from sdq_infra import names
from sdq_infra.components.buckets import BucketSpec, PrivateBucket, tls_only_policy
from sdq_infra.components.registry import ImageRepository, RepositorySpec
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class StateStack(SdqStack):
    """The bucket every other stack keeps its state in (S3 lock files, no lock table).

    Its own state is local (build/tfstate/state.tfstate): it cannot live in the bucket it
    creates. Losing that file loses nothing but the handle: `terraform import` gets it back.
    """

    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "state", cfg, options)
        bucket = PrivateBucket(
            self, "state", BucketSpec(name=options.state_bucket, versioned=True, tls_only=False)
        )
        S3BucketPolicy(
            self, "tls-only", bucket=bucket.bucket.id, policy=tls_only_policy(bucket.outputs.arn)
        )
        self.output("state_bucket", bucket.outputs.name, "bucket holding every stack's state")


class RegistryStack(SdqStack):
    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "registry", cfg, options)
        repo = ImageRepository(
            self, "queue-agent", RepositorySpec(name=naming.queue_agent_repository_name(cfg))
        )
        self.output(
            "queue_agent_repository_url",
            repo.outputs.url,
            "ECR repository of the queue agent image",
        )
        # Pinned runtime images sdq builds (`make release SERVICE=sdwebui|comfyui`).
        for kind in RuntimeType:
            runtime_repo = ImageRepository(
                self,
                f"runtime-{kind.value}",
                RepositorySpec(name=names.runtime_image_repository_name(cfg, kind.value)),
            )
            self.output(
                f"{kind.value}_repository_url",
                runtime_repo.outputs.url,
                f"ECR repository of the {kind.value} runtime image",
            )
