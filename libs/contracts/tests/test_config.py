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
    data["runtimes"][0]["type"] = "invokeai"
    assert errors_of(data) == {"runtimes[0].type": "Input should be 'sdwebui' or 'comfyui'"}


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
