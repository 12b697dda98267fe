"""The `model_sync` stack: the model bucket, its event notifications and the model_sync Lambda."""

from __future__ import annotations

from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.components.model_sync import ModelSync, ModelSyncSpec
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class ModelSyncStack(SdqStack):
    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "model_sync", cfg, options)
        sync = ModelSync(
            self,
            "model-sync",
            ModelSyncSpec(
                bucket=cfg.buckets.models,
                function_name=names.model_sync_function_name(cfg),
                role_name=names.role_name(cfg, "model-sync"),
                handler=names.MODEL_SYNC_HANDLER,
                artifact=options.lambda_artifact("model_sync"),
                cluster_name=naming.cluster_name(cfg),
                node_tag_key=naming.NODE_TAG_CLUSTER,
                cache_path=naming.MODEL_CACHE_HOST_PATH,
                collector_layer_arn=cfg.observability.lambda_collector_layer_arn,
            ),
            self.arns,
        ).outputs
        self.output("model_bucket", sync.bucket_name, "SDQ_MODEL_BUCKET")
        self.output("model_sync_function", sync.function_name, "model_sync Lambda")
