"""The `cluster` stack: EKS, Karpenter's AWS side, and the KEDA and collector roles.

It reads the network stack's outputs through its remote state (the subnet ids are generated);
everything else it needs is a name from :mod:`sdq_contracts.naming`.
"""

from __future__ import annotations

from cdktf import DataTerraformRemoteStateS3, Token
from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.components.eks import Cluster, ClusterSpec
from sdq_infra.components.karpenter import Karpenter
from sdq_infra.components.platform_roles import (
    PodRole,
    PodRoleSpec,
    collector_policy,
)
from sdq_infra.karpenter_policy import KarpenterSpec
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class ClusterStack(SdqStack):
    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "cluster", cfg, options)
        network = DataTerraformRemoteStateS3(
            self,
            "network",
            bucket=options.state_bucket,
            key=names.backend_key(cfg, "network"),
            region=cfg.region,
        )
        name = naming.cluster_name(cfg)
        cluster = Cluster(
            self,
            "eks",
            ClusterSpec(
                name=name,
                kubernetes_version=cfg.cluster.kubernetes_version,
                subnet_ids=Token.as_list(network.get("private_subnet_ids")),
                system_instance_types=cfg.cluster.system_instance_types,
                system_node_count=cfg.cluster.system_node_count,
                admin_principal_arns=cfg.cluster.admin_principal_arns,
                public_access_cidrs=cfg.cluster.public_access_cidrs,
                cluster_role_name=names.role_name(cfg, "eks-cluster"),
                system_node_role_name=names.role_name(cfg, "eks-system-node"),
            ),
            self.arns,
        ).outputs
        karpenter = Karpenter(
            self,
            "karpenter",
            KarpenterSpec(
                cluster_name=cluster.name,
                owner_cluster=name,
                cluster_arn=cluster.arn,
                node_role_name=names.role_name(cfg, "karpenter-node"),
                controller_role_name=names.role_name(cfg, "karpenter-controller"),
                interruption_queue_name=names.karpenter_interruption_queue_name(cfg),
                namespace=naming.KARPENTER_NAMESPACE,
                service_account=naming.KARPENTER_SERVICE_ACCOUNT,
                model_bucket=cfg.buckets.models,
            ),
            self.arns,
        ).outputs
        keda = PodRole(
            self,
            "keda",
            PodRoleSpec(
                role_name=names.role_name(cfg, "keda-operator"),
                cluster_name=cluster.name,
                namespace=naming.KEDA_NAMESPACE,
                service_account=naming.KEDA_SERVICE_ACCOUNT,
                # Each runtime stack grants KEDA its own queue (stacks/runtime.py).
                policy=None,
            ),
        )
        collector = PodRole(
            self,
            "collector",
            PodRoleSpec(
                role_name=names.role_name(cfg, "otel-collector"),
                cluster_name=cluster.name,
                namespace=naming.workload_namespace(cfg),
                service_account=naming.COLLECTOR_SERVICE_ACCOUNT,
                policy=collector_policy(),
            ),
        )
        self.output("cluster_name", cluster.name, "EKS cluster name")
        self.output("cluster_endpoint", cluster.endpoint, "Kubernetes API endpoint")
        self.output(
            "cluster_certificate_authority", cluster.certificate_authority, "API server CA (base64)"
        )
        self.output(
            "karpenter_node_role_name", karpenter.node_role_name, "role of Karpenter's GPU nodes"
        )
        self.output(
            "karpenter_instance_profile",
            karpenter.instance_profile_name,
            "EC2NodeClass instanceProfile",
        )
        self.output(
            "karpenter_interruption_queue",
            karpenter.interruption_queue_name,
            "Karpenter settings.interruptionQueue",
        )
        self.output(
            "karpenter_controller_role_arn",
            karpenter.controller_role_arn,
            "Karpenter controller role (pod identity)",
        )
        self.output("keda_operator_role_arn", keda.role_arn, "KEDA operator role (pod identity)")
        self.output(
            "collector_role_arn", collector.role_arn, "OpenTelemetry collector role (pod identity)"
        )
