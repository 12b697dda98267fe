"""The EKS control plane, a small managed node group for system pods, access entries and the
core add-ons. GPU nodes are Karpenter's (see :mod:`sdq_infra.components.karpenter`)."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Op, Precondition, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_iam_session_context import DataAwsIamSessionContext
from cdktf_cdktf_provider_aws.ec2_tag import Ec2Tag
from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.eks_access_policy_association import (
    EksAccessPolicyAssociation,
    EksAccessPolicyAssociationAccessScope,
)
from cdktf_cdktf_provider_aws.eks_addon import EksAddon
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster,
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
    EksClusterUpgradePolicy,
    EksClusterVpcConfig,
)
from cdktf_cdktf_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupScalingConfig,
    EksNodeGroupUpdateConfig,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from sdq_infra import iam
from sdq_infra.components.network import KARPENTER_DISCOVERY_TAG
from sdq_infra.iam import Arns

# Add-ons EKS manages; versions default to the ones EKS recommends for the cluster version.
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
ADDONS_AFTER_NODES = ("coredns",)
NODE_MANAGED_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
)
CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
SYSTEM_NODE_LABEL = "sdq/node-role"
# Days the control-plane log group (/aws/eks/<cluster>/cluster) keeps its events.
CONTROL_PLANE_LOG_RETENTION_DAYS = 30
# STANDARD support only: a cluster left on an old version is upgraded by EKS, not billed for
# extended support.
UPGRADE_SUPPORT_TYPE = "STANDARD"


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    kubernetes_version: str
    subnet_ids: list[str]
    system_instance_types: tuple[str, ...]
    system_node_count: int
    admin_principal_arns: tuple[str, ...]
    cluster_role_name: str
    system_node_role_name: str
    # CIDRs allowed on the public endpoint; empty: private endpoint only.
    public_access_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    log_retention_days: int = CONTROL_PLANE_LOG_RETENTION_DAYS


@dataclass(frozen=True)
class ClusterOutputs:
    name: str
    arn: str
    endpoint: str
    certificate_authority: str
    security_group_id: str


def attach_managed(
    scope: Construct, prefix: str, role: IamRole, policies: tuple[str, ...], arns: Arns
) -> list[IamRolePolicyAttachment]:
    return [
        IamRolePolicyAttachment(
            scope, f"{prefix}-{policy}", role=role.name, policy_arn=arns.managed_policy(policy)
        )
        for policy in policies
    ]


def creator_is_admin_message(principal: str) -> str:
    return (
        f"cluster.admin_principal_arns lists {principal}, the principal running terraform. "
        "EKS already makes the cluster creator an admin "
        "(bootstrap_cluster_creator_admin_permissions) and refuses a second access entry for "
        "it: remove it from cluster.admin_principal_arns in the config."
    )


class Cluster(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: ClusterSpec, arns: Arns) -> None:
        super().__init__(scope, construct_id)
        secrets_key = KmsKey(
            self,
            "secrets-key",
            description=f"{spec.name} EKS secrets envelope encryption",
            enable_key_rotation=True,
            deletion_window_in_days=7,
        )
        role = IamRole(
            self,
            "cluster-role",
            name=spec.cluster_role_name,
            assume_role_policy=iam.service_trust("eks.amazonaws.com"),
        )
        cluster_policies = attach_managed(
            self, "cluster-role", role, ("AmazonEKSClusterPolicy",), arns
        )
        # EKS writes control-plane logs to this group; created first so it has a retention
        # (EKS would otherwise create it with none and keep the logs forever).
        control_plane_logs = CloudwatchLogGroup(
            self,
            "control-plane-logs",
            name=f"/aws/eks/{spec.name}/cluster",
            retention_in_days=spec.log_retention_days,
        )
        cluster = EksCluster(
            self,
            "cluster",
            name=spec.name,
            version=spec.kubernetes_version,
            role_arn=role.arn,
            vpc_config=EksClusterVpcConfig(
                subnet_ids=spec.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=bool(spec.public_access_cidrs),
                public_access_cidrs=list(spec.public_access_cidrs) or None,
            ),
            upgrade_policy=EksClusterUpgradePolicy(support_type=UPGRADE_SUPPORT_TYPE),
            access_config=EksClusterAccessConfig(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"],
                provider=EksClusterEncryptionConfigProvider(key_arn=secrets_key.arn),
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            depends_on=[*cluster_policies, control_plane_logs],
        )
        security_group_id = cluster.vpc_config.cluster_security_group_id
        # Karpenter's EC2NodeClass selects the security group of GPU nodes by this tag.
        Ec2Tag(
            self,
            "sg-discovery",
            resource_id=security_group_id,
            key=KARPENTER_DISCOVERY_TAG,
            value=spec.name,
        )
        early_addons = [
            EksAddon(
                self,
                f"addon-{name}",
                cluster_name=cluster.name,
                addon_name=name,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
            )
            for name in ADDONS_BEFORE_NODES
        ]
        node_role = IamRole(
            self,
            "system-node-role",
            name=spec.system_node_role_name,
            assume_role_policy=iam.service_trust("ec2.amazonaws.com"),
        )
        node_policies = attach_managed(
            self, "system-node-role", node_role, NODE_MANAGED_POLICIES, arns
        )
        nodes = EksNodeGroup(
            self,
            "system-nodes",
            cluster_name=cluster.name,
            node_group_name="system",
            node_role_arn=node_role.arn,
            subnet_ids=spec.subnet_ids,
            instance_types=list(spec.system_instance_types),
            capacity_type="ON_DEMAND",
            ami_type="AL2023_x86_64_STANDARD",
            scaling_config=EksNodeGroupScalingConfig(
                desired_size=spec.system_node_count,
                min_size=spec.system_node_count,
                max_size=spec.system_node_count + 1,
            ),
            update_config=EksNodeGroupUpdateConfig(max_unavailable=1),
            labels={SYSTEM_NODE_LABEL: "system"},
            depends_on=[*node_policies, *early_addons],
        )
        for name in ADDONS_AFTER_NODES:
            EksAddon(
                self,
                f"addon-{name}",
                cluster_name=cluster.name,
                addon_name=name,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                depends_on=[nodes],
            )
        # The principal running terraform is cluster admin already
        # (bootstrap_cluster_creator_admin_permissions); an access entry for it again fails the
        # apply with a ResourceInUseException, so each entry refuses it with a clear message.
        # issuer_arn is the IAM role behind an assumed-role session (or the user itself).
        creator = DataAwsIamSessionContext(
            self, "creator", arn=DataAwsCallerIdentity(self, "caller").arn
        )
        for index, principal in enumerate(spec.admin_principal_arns):
            entry = EksAccessEntry(
                self,
                f"admin-{index}",
                cluster_name=cluster.name,
                principal_arn=principal,
                type="STANDARD",
                lifecycle=TerraformResourceLifecycle(
                    precondition=[
                        Precondition(
                            condition=Op.neq(creator.issuer_arn, principal),
                            error_message=creator_is_admin_message(principal),
                        )
                    ]
                ),
            )
            EksAccessPolicyAssociation(
                self,
                f"admin-{index}-policy",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=f"arn:{arns.partition}:eks::aws:cluster-access-policy/{CLUSTER_ADMIN_POLICY}",
                access_scope=EksAccessPolicyAssociationAccessScope(type="cluster"),
            )
        self.cluster = cluster
        self.outputs = ClusterOutputs(
            name=cluster.name,
            arn=cluster.arn,
            endpoint=cluster.endpoint,
            certificate_authority=cluster.certificate_authority.get(0).data,
            security_group_id=security_group_id,
        )
