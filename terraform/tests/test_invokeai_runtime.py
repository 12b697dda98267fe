"""An InvokeAI runtime configured: its runtime stack (queue, DLQ, subscription filter, pod role)
synthesizes like the other runtime types, and the API Lambda learns its type."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, RuntimeType, load_config
from sdq_infra import names
from sdq_infra.options import InfraOptions, find_repo_root

pytestmark = pytest.mark.unit

REPO = find_repo_root(Path(__file__).parent)


def test_invokeai_runtime_gets_its_stack_and_routing(
    synth_app: Callable[[DeploymentConfig, InfraOptions], Any], tmp_path: Path
) -> None:
    from sdq_api_validator.settings import load_settings

    base = load_config(REPO / "config.yaml").model_dump(mode="json")
    invokeai = {"name": "invoke", "type": "invokeai", "model": "dreamshaper_8.safetensors"}
    cfg = DeploymentConfig.model_validate(base | {"runtimes": [*base["runtimes"], invokeai]})
    synth = synth_app(cfg, InfraOptions(REPO, tmp_path, "sdq-test-tfstate"))
    runtime = cfg.runtime("invoke")
    assert runtime is not None and runtime.type is RuntimeType.INVOKEAI
    stack = names.runtime_stack_id(runtime)
    queues = synth.resources(stack, "aws_sqs_queue")
    assert len(queues) == 2  # tasks + dead letters
    [sub] = synth.resources(stack, "aws_sns_topic_subscription").values()
    assert json.loads(sub["filter_policy"]) == naming.filter_policy(runtime)
    [validator] = synth.resources("routing", "aws_lambda_function").values()
    settings = load_settings(validator["environment"]["variables"])
    assert ("invoke", RuntimeType.INVOKEAI) in [(r.name, r.type) for r in settings.runtimes]
