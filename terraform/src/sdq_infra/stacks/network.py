"""The `network` stack: a new VPC, or the existing one named in the config."""

from __future__ import annotations

from constructs import Construct

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig
from sdq_infra.components.network import (
    ExistingNetwork,
    ExistingNetworkSpec,
    Network,
    NetworkOutputs,
    NetworkSpec,
)
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack


class NetworkStack(SdqStack):
    def __init__(self, scope: Construct, cfg: DeploymentConfig, options: InfraOptions) -> None:
        super().__init__(scope, "network", cfg, options)
        cluster = naming.cluster_name(cfg)
        existing = cfg.network.existing_vpc
        outputs: NetworkOutputs
        if existing is not None:
            outputs = ExistingNetwork(
                self,
                "existing",
                ExistingNetworkSpec(
                    cluster_name=cluster,
                    vpc_id=existing.vpc_id,
                    private_subnet_ids=existing.private_subnet_ids,
                    public_subnet_ids=existing.public_subnet_ids,
                ),
            ).outputs
        else:
            outputs = Network(
                self,
                "vpc",
                NetworkSpec(
                    name=cfg.stack_name,
                    cluster_name=cluster,
                    region=cfg.region,
                    cidr=cfg.network.vpc_cidr,
                    az_count=cfg.network.availability_zones,
                    nat=cfg.network.nat,
                ),
            ).outputs
        self.output("vpc_id", outputs.vpc_id, "VPC of the cluster")
        self.output("private_subnet_ids", outputs.private_subnet_ids, "subnets of the nodes")
        self.output(
            "public_subnet_ids", outputs.public_subnet_ids, "subnets of public load balancers"
        )
