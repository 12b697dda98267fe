"""The VPC the cluster runs in: public and private subnets across AZs, NAT as configured, an S3
gateway endpoint (model syncs and outputs never pay NAT traffic), and the subnet tags load
balancers and Karpenter discover subnets by. Or, with an existing VPC, only the tags."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Literal

from cdktf import Fn
from cdktf_cdktf_provider_aws.data_aws_availability_zones import DataAwsAvailabilityZones
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.ec2_tag import Ec2Tag
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from constructs import Construct

KARPENTER_DISCOVERY_TAG = "karpenter.sh/discovery"
PUBLIC_ELB_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"
# At least /19 subnets in a /16: room for pod IPs (the VPC CNI gives every pod a VPC address).
MIN_SUBNET_BITS = 3


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    cluster_name: str
    region: str
    cidr: str
    az_count: int
    nat: Literal["single", "per_az", "none"]


@dataclass(frozen=True)
class ExistingNetworkSpec:
    cluster_name: str
    vpc_id: str
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class NetworkOutputs:
    vpc_id: str
    private_subnet_ids: list[str]
    public_subnet_ids: list[str]


def subnet_cidrs(cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """(public, private) CIDRs: equal blocks, public first; /19s in a /16 for up to 4 AZs."""
    vpc = ipaddress.ip_network(cidr)
    bits = max(MIN_SUBNET_BITS, math.ceil(math.log2(2 * az_count)))
    blocks = [str(block) for block in vpc.subnets(prefixlen_diff=bits)]
    return blocks[:az_count], blocks[az_count : 2 * az_count]


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: NetworkSpec) -> None:
        super().__init__(scope, construct_id)
        zones = DataAwsAvailabilityZones(self, "zones", state="available")
        vpc = Vpc(
            self,
            "vpc",
            cidr_block=spec.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": spec.name},
        )
        # No rules: nothing may use the default security group by accident.
        DefaultSecurityGroup(self, "default-sg", vpc_id=vpc.id)
        igw = InternetGateway(self, "igw", vpc_id=vpc.id, tags={"Name": spec.name})
        public_cidrs, private_cidrs = subnet_cidrs(spec.cidr, spec.az_count)
        public = [
            Subnet(
                self,
                f"public-{index}",
                vpc_id=vpc.id,
                cidr_block=block,
                availability_zone=Fn.element(zones.names, index),
                tags={"Name": f"{spec.name}-public-{index}", PUBLIC_ELB_TAG: "1"},
            )
            for index, block in enumerate(public_cidrs)
        ]
        private = [
            Subnet(
                self,
                f"private-{index}",
                vpc_id=vpc.id,
                cidr_block=block,
                availability_zone=Fn.element(zones.names, index),
                tags={
                    "Name": f"{spec.name}-private-{index}",
                    INTERNAL_ELB_TAG: "1",
                    KARPENTER_DISCOVERY_TAG: spec.cluster_name,
                },
            )
            for index, block in enumerate(private_cidrs)
        ]
        public_rt = RouteTable(
            self, "public-rt", vpc_id=vpc.id, tags={"Name": f"{spec.name}-public"}
        )
        Route(
            self,
            "public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
        )
        for index, subnet in enumerate(public):
            RouteTableAssociation(
                self, f"public-rta-{index}", subnet_id=subnet.id, route_table_id=public_rt.id
            )
        nats = self._nat_gateways(spec, public, igw)
        private_rts = []
        for index, subnet in enumerate(private):
            table = RouteTable(
                self,
                f"private-rt-{index}",
                vpc_id=vpc.id,
                tags={"Name": f"{spec.name}-private-{index}"},
            )
            RouteTableAssociation(
                self, f"private-rta-{index}", subnet_id=subnet.id, route_table_id=table.id
            )
            if nats:
                Route(
                    self,
                    f"private-default-{index}",
                    route_table_id=table.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nats[index % len(nats)].id,
                )
            private_rts.append(table)
        VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{spec.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[public_rt.id, *(table.id for table in private_rts)],
            tags={"Name": f"{spec.name}-s3"},
        )
        self.outputs = NetworkOutputs(
            vpc_id=vpc.id,
            private_subnet_ids=[subnet.id for subnet in private],
            public_subnet_ids=[subnet.id for subnet in public],
        )

    def _nat_gateways(
        self, spec: NetworkSpec, public: list[Subnet], igw: InternetGateway
    ) -> list[NatGateway]:
        count = {"single": 1, "per_az": len(public), "none": 0}[spec.nat]
        gateways = []
        for index in range(count):
            eip = Eip(
                self, f"nat-eip-{index}", domain="vpc", tags={"Name": f"{spec.name}-nat-{index}"}
            )
            gateways.append(
                NatGateway(
                    self,
                    f"nat-{index}",
                    allocation_id=eip.id,
                    subnet_id=public[index].id,
                    tags={"Name": f"{spec.name}-nat-{index}"},
                    depends_on=[igw],
                )
            )
        return gateways


class ExistingNetwork(Construct):
    """Adopts a VPC the user already has: adds the discovery tags, creates nothing else."""

    def __init__(self, scope: Construct, construct_id: str, spec: ExistingNetworkSpec) -> None:
        super().__init__(scope, construct_id)
        for index, subnet_id in enumerate(spec.private_subnet_ids):
            Ec2Tag(
                self,
                f"private-karpenter-{index}",
                resource_id=subnet_id,
                key=KARPENTER_DISCOVERY_TAG,
                value=spec.cluster_name,
            )
            Ec2Tag(
                self, f"private-elb-{index}", resource_id=subnet_id, key=INTERNAL_ELB_TAG, value="1"
            )
        for index, subnet_id in enumerate(spec.public_subnet_ids):
            Ec2Tag(
                self, f"public-elb-{index}", resource_id=subnet_id, key=PUBLIC_ELB_TAG, value="1"
            )
        self.outputs = NetworkOutputs(
            vpc_id=spec.vpc_id,
            private_subnet_ids=list(spec.private_subnet_ids),
            public_subnet_ids=list(spec.public_subnet_ids),
        )
