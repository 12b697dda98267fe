"""The network stack's other shapes: NAT per AZ, no NAT, and adopting an existing VPC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdq_contracts.config import DeploymentConfig, load_config
from sdq_infra.options import InfraOptions, find_repo_root

# cdktf synth (node + jsii): seconds to minutes per app on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = find_repo_root(Path(__file__).parent)


SynthApp = Callable[[DeploymentConfig, InfraOptions], Any]


def network_resources(
    synth_app: SynthApp, network: dict[str, Any], tmp_path: Path
) -> dict[str, dict[str, Any]]:
    base = load_config(REPO / "config.yaml").model_dump(mode="json")
    cfg = DeploymentConfig.model_validate(base | {"network": network})
    synth = synth_app(cfg, InfraOptions(REPO, tmp_path, "sdq-test-tfstate"))
    return synth.json("network").get("resource", {})


def test_nat_per_az(synth_app: SynthApp, tmp_path: Path) -> None:
    per_az = network_resources(
        synth_app, {"nat": "per_az", "availability_zones": 3}, tmp_path / "a"
    )
    assert len(per_az["aws_nat_gateway"]) == 3
    routes = [r for r in per_az["aws_route"].values() if "nat_gateway_id" in r]
    assert len({r["nat_gateway_id"] for r in routes}) == 3


def test_a_new_vpc_without_nat_is_refused() -> None:
    """Nodes of a new VPC without NAT (and no endpoints) could not reach ECR, STS or EKS."""
    base = load_config(REPO / "config.yaml").model_dump(mode="json")
    with pytest.raises(ValueError, match="nat: none is only allowed with existing_vpc"):
        DeploymentConfig.model_validate(base | {"network": {"nat": "none"}})


def test_existing_vpc_only_gets_discovery_tags(synth_app: SynthApp, tmp_path: Path) -> None:
    existing = {
        "vpc_id": "vpc-0123456789abcdef0",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "public_subnet_ids": ["subnet-c"],
    }
    resources = network_resources(synth_app, {"existing_vpc": existing, "nat": "none"}, tmp_path)
    assert set(resources) == {"aws_ec2_tag"}
    tags = {(t["resource_id"], t["key"]): t["value"] for t in resources["aws_ec2_tag"].values()}
    assert tags[("subnet-a", "karpenter.sh/discovery")] == "sdq"
    assert tags[("subnet-b", "kubernetes.io/role/internal-elb")] == "1"
    assert tags[("subnet-c", "kubernetes.io/role/elb")] == "1"


def test_subnet_blocks_do_not_overlap() -> None:
    # Imported here: the module loads cdktf (~30 s), which collection alone should not pay.
    from sdq_infra.components.network import subnet_cidrs

    public, private = subnet_cidrs("10.0.0.0/16", 3)
    assert public == ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
    assert private == ["10.0.96.0/19", "10.0.128.0/19", "10.0.160.0/19"]
    public6, private6 = subnet_cidrs("10.0.0.0/16", 6)
    assert len(set(public6 + private6)) == 12
    assert all(block.endswith("/20") for block in public6 + private6)


def test_lambdas_export_spans_to_the_collector_layer_when_configured(
    synth_app: SynthApp, tmp_path: Path
) -> None:
    layer = "arn:aws:lambda:us-west-2:901920570463:layer:aws-otel-collector-amd64-ver-0-117-0:1"
    base = load_config(REPO / "config.yaml").model_dump(mode="json")
    cfg = DeploymentConfig.model_validate(
        base | {"observability": {"lambda_collector_layer_arn": layer}}
    )
    synth = synth_app(cfg, InfraOptions(REPO, tmp_path, "sdq-test-tfstate"))
    for stack in ("routing", "model_sync"):
        [function] = synth.json(stack)["resource"]["aws_lambda_function"].values()
        assert function["layers"] == [layer]
        env = function["environment"]["variables"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"


def test_private_endpoint_admins_and_no_account_logging(
    synth_app: SynthApp, tmp_path: Path
) -> None:
    admin = "arn:aws:iam::123456789012:role/platform-admins"
    base = load_config(REPO / "config.yaml").model_dump(mode="json")
    cluster = base["cluster"] | {"public_access_cidrs": [], "admin_principal_arns": [admin]}
    api = base["api"] | {"account_logging": "off"}
    cfg = DeploymentConfig.model_validate(base | {"cluster": cluster, "api": api})
    synth = synth_app(cfg, InfraOptions(REPO, tmp_path, "sdq-test-tfstate"))
    [eks] = synth.json("cluster")["resource"]["aws_eks_cluster"].values()
    assert eks["vpc_config"]["endpoint_public_access"] is False
    assert eks["vpc_config"]["endpoint_private_access"] is True
    assert "public_access_cidrs" not in eks["vpc_config"]
    # The creator is admin already: listing it again is refused with a clear message.
    [entry] = [
        e
        for e in synth.json("cluster")["resource"]["aws_eks_access_entry"].values()
        if e["principal_arn"] == admin
    ]
    [precondition] = entry["lifecycle"]["precondition"]
    assert "aws_iam_session_context" in precondition["condition"]
    assert "issuer_arn" in precondition["condition"]
    assert admin in precondition["condition"]
    assert "remove it from cluster.admin_principal_arns" in precondition["error_message"]
    routing = synth.json("routing")["resource"]
    # Nothing account-wide is touched and no stage logging needs the account's role.
    assert "aws_api_gateway_account" not in routing
    api_groups = [
        g["name"]
        for g in routing.get("aws_cloudwatch_log_group", {}).values()
        if g["name"].startswith(("/aws/apigateway/", "API-Gateway-Execution-Logs_"))
    ]
    assert api_groups == []
    [stage] = routing["aws_api_gateway_stage"].values()
    assert "access_log_settings" not in stage
    [settings] = routing["aws_api_gateway_method_settings"].values()
    assert settings["settings"]["logging_level"] == "OFF"
