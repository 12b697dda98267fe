"""Names both the infrastructure and the k8s overlays derive from the config, and SDQ_RUNTIMES."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import TypeAdapter

from sdq_contracts import naming, parse_config
from sdq_contracts.config import NAME_PATTERN, RuntimeConfig, runtimes_env

pytestmark = pytest.mark.unit

CFG = parse_config(
    {
        "stack_name": "gen",
        "region": "eu-west-1",
        "buckets": {"models": "gen-models", "outputs": "gen-outputs"},
        "cluster": {"namespace": "imaging"},
        "runtimes": [
            {"name": "sd15", "type": "sdwebui", "model": "v1-5.safetensors", "image": "r/sd:1"},
            {"name": "flows", "type": "comfyui", "dynamic_model": True},
        ],
    }
)


def test_runtimes_env_is_compact_json_the_api_validator_parses_back() -> None:
    value = runtimes_env(CFG.runtimes)
    assert " " not in value
    assert json.loads(value) == [
        {"name": "sd15", "type": "sdwebui", "model": "v1-5.safetensors", "dynamic_model": False},
        {"name": "flows", "type": "comfyui", "model": None, "dynamic_model": True},
    ]
    parsed = TypeAdapter(tuple[RuntimeConfig, ...]).validate_json(value)
    assert [(r.name, r.type, r.model, r.dynamic_model) for r in parsed] == [
        (r.name, r.type, r.model, r.dynamic_model) for r in CFG.runtimes
    ]


def test_in_cluster_identities() -> None:
    assert naming.workload_namespace(CFG) == "imaging"
    assert (naming.KARPENTER_NAMESPACE, naming.KARPENTER_SERVICE_ACCOUNT) == (
        "kube-system",
        "karpenter",
    )
    assert (naming.KEDA_NAMESPACE, naming.KEDA_SERVICE_ACCOUNT) == ("keda", "keda-operator")
    # No runtime name can make its account collide with the collector's.
    runtime_account = re.compile(NAME_PATTERN.replace("^", "^sdq-", 1))
    assert all(runtime_account.match(naming.service_account_name(r)) for r in CFG.runtimes)
    assert not runtime_account.match(naming.COLLECTOR_SERVICE_ACCOUNT)


def test_queue_agent_repository_is_per_stack() -> None:
    assert naming.queue_agent_repository_name(CFG) == "gen/queue-agent"
