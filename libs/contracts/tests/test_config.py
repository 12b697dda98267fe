"""Deployment config: the shipped example loads; every mistake is reported by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sdq_contracts import ConfigError, load_config, parse_config

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "stack_name": "sdq",
    "region": "us-west-2",
    "buckets": {"models": "my-models", "outputs": "my-outputs"},
    "runtimes": [
        {"name": "sd", "type": "sdwebui", "model": "v1-5.safetensors"},
        {"name": "comfy", "type": "comfyui", "dynamic_model": True},
    ],
}


def errors_of(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return dict(info.value.errors)


def test_the_shipped_example_config_loads(repo_root):
    cfg = load_config(repo_root / "config.yaml")
    assert [(r.name, r.type.value) for r in cfg.runtimes] == [
        ("sdruntime", "sdwebui"),
        ("comfyui", "comfyui"),
    ]
    assert (cfg.api.throttle.rate_limit, cfg.api.throttle.burst_limit) == (30, 50)


def test_defaults():
    cfg = parse_config(BASE)
    assert (cfg.api.throttle.rate_limit, cfg.api.throttle.burst_limit) == (30, 50)
    assert cfg.runtimes[0].scaling.min_replicas == 0
    assert [c.value for c in cfg.runtimes[0].capacity_types] == ["spot", "on-demand"]


def test_missing_runtime_name():
    data = copy.deepcopy(BASE)
    del data["runtimes"][1]["name"]
    assert errors_of(data) == {"runtimes[1].name": "Field required"}


def test_bad_runtime_type():
    data = copy.deepcopy(BASE)
    data["runtimes"][0]["type"] = "fooocus"
    assert errors_of(data) == {
        "runtimes[0].type": "Input should be 'sdwebui', 'comfyui' or 'invokeai'"
    }


def test_invokeai_is_a_runtime_type():
    data = copy.deepcopy(BASE)
    data["runtimes"][0]["type"] = "invokeai"
    assert parse_config(data).runtimes[0].type.value == "invokeai"


def test_duplicate_runtime_names():
    data = copy.deepcopy(BASE)
    data["runtimes"][1]["name"] = "sd"
    assert errors_of(data) == {"runtimes": "Value error, runtime name 'sd' is used more than once"}


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("runtimes", 0, "model"), None, "runtimes[0]"),  # neither model nor dynamic_model
        (("runtimes", 1, "model"), "x.ckpt", "runtimes[1]"),  # both
        (("runtimes", 0, "scaling"), {"min_replicas": 3, "max_replicas": 2}, "runtimes[0].scaling"),
        (("runtimes", 0, "task_timeout_seconds"), 50_000, "runtimes[0].task_timeout_seconds"),
        (("runtimes", 0, "instance_types"), ["gpu"], "runtimes[0].instance_types"),
        (("runtimes", 0, "capacity_types"), ["spot", "spot"], "runtimes[0].capacity_types"),
        (("runtimes", 0, "name"), "bad name!", "runtimes[0].name"),
        (("buckets", "models"), "Not_A_Bucket", "buckets.models"),
        (("stack_name",), "SDQ", "stack_name"),
        (("region",), "mars", "region"),
        (("runtimes",), [], "runtimes"),
        (("network",), {"vpc_cidr": "10.0.0.0/24"}, "network.vpc_cidr"),
        (("api",), {"throttle": {"rate_limit": 0}}, "api.throttle.rate_limit"),
        (("surprise",), 1, "surprise"),
    ],
)
def test_each_mistake_names_its_field(path, value, field):
    data = copy.deepcopy(BASE)
    target = data
    for part in path[:-1]:
        target = target[part]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert field in errors_of(data)


def test_file_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtimes: [\n")
    with pytest.raises(ConfigError, match="yaml"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


@pytest.mark.parametrize(
    "name", ["SD", "sd_webui", "-sd", "sd-", "sd.webui", "a" * 64, "sd webui", "Comfy"]
)
def test_runtime_names_must_be_dns_labels(name):
    """Runtime names become Kubernetes names and label values, SQS queue and IAM names."""
    data = copy.deepcopy(BASE)
    data["runtimes"][0]["name"] = name
    assert "runtimes[0].name" in errors_of(data)


def test_runtime_name_length_is_bounded_by_its_longest_derived_name():
    from sdq_contracts import naming

    data = copy.deepcopy(BASE)
    data["stack_name"] = "s" * 24  # the longest stack name
    # "<stack>-<runtime>-gpu" (the NodePool, a label value) is the longest: 63 characters.
    fits = 63 - len("s" * 24) - len("--gpu")
    data["runtimes"][0]["name"] = "r" * fits
    cfg = parse_config(data)
    assert len(naming.gpu_nodepool_name(cfg, cfg.runtimes[0])) == 63
    data["runtimes"][0]["name"] = "r" * (fits + 1)
    (message,) = errors_of(data).values()
    assert "NodePool" in message
    assert f"'{'r' * (fits + 1)}' is too long" in message


def test_every_derived_name_of_a_valid_runtime_fits():
    from sdq_contracts import naming

    cfg = parse_config(BASE)
    for runtime in cfg.runtimes:
        for what, (name, limit) in naming.runtime_derived_names(cfg, runtime).items():
            assert len(name) <= limit, what


def test_nat_none_needs_an_existing_vpc():
    data = copy.deepcopy(BASE)
    data["network"] = {"nat": "none"}
    message = errors_of(data)["network"]
    assert "nat: none is only allowed with existing_vpc" in message
    data["network"]["existing_vpc"] = {
        "vpc_id": "vpc-0123456789abcdef0",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
    }
    assert parse_config(data).network.nat == "none"


def test_max_body_bytes_stays_below_lambdas_synchronous_payload_limit():
    from sdq_contracts.config import LAMBDA_SYNC_PAYLOAD_BYTES, MAX_BODY_BYTES_LIMIT

    assert parse_config(BASE).api.max_body_bytes == MAX_BODY_BYTES_LIMIT < LAMBDA_SYNC_PAYLOAD_BYTES
    data = copy.deepcopy(BASE)
    data["api"] = {"max_body_bytes": 10 * 1024 * 1024}
    assert "api.max_body_bytes" in errors_of(data)


def test_public_endpoint_cidrs():
    cfg = parse_config(BASE)
    assert cfg.cluster.public_access_cidrs == ("0.0.0.0/0",)
    assert not cfg.cluster.private_endpoint_only
    data = copy.deepcopy(BASE)
    data["cluster"] = {"public_access_cidrs": []}
    assert parse_config(data).cluster.private_endpoint_only
    data["cluster"] = {"public_access_cidrs": ["203.0.113.0/24", "office"]}
    assert errors_of(data) == {
        "cluster.public_access_cidrs": "Value error, 'office' is not a CIDR block"
    }


def test_api_gateway_account_logging_is_opt_in():
    assert parse_config(BASE).api.account_logging == "off"


def test_download_links_last_an_hour_unless_configured_within_sigv4_limits():
    assert parse_config(BASE).downloads.link_seconds == 3600
    assert parse_config(BASE | {"downloads": {"link_seconds": 900}}).downloads.link_seconds == 900
    for bad in (59, 604_801):
        errors = errors_of(BASE | {"downloads": {"link_seconds": bad}})
        assert list(errors) == ["downloads.link_seconds"]
