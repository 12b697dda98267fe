"""Every synthesized stack passes `terraform init -backend=false && terraform validate`, offline
(providers from the filesystem mirror through the generated CLI config)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sdq_infra.terraform import (
    PlanSummary,
    Terraform,
    mirror_has_provider,
    plugin_mirror,
    terraform_env,
)

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Synth

# Terraform, checkov or the Lambda wheels: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_cli_config_points_at_the_mirror(tmp_path: Path) -> None:
    env = terraform_env(tmp_path)
    text = (tmp_path / "terraformrc").read_text()
    assert env["TF_CLI_CONFIG_FILE"] == str(tmp_path / "terraformrc")
    assert f'path    = "{plugin_mirror()}"' in text
    assert f'plugin_cache_dir = "{tmp_path / "tf-plugin-cache"}"' in text


def test_every_stack_validates_offline(synthesized: Synth, tmp_path: Path) -> None:
    if not mirror_has_provider(plugin_mirror()):
        pytest.skip(f"no hashicorp/aws 5.100.0 in the provider mirror {plugin_mirror()}")
    env = terraform_env(tmp_path)
    validated = []
    for stack in synthesized.stacks:
        tf = Terraform(synthesized.stack_dir(stack), env)
        tf.init(backend=False)
        tf.validate()
        validated.append(stack)
        lock = (synthesized.stack_dir(stack) / ".terraform.lock.hcl").read_text()
        assert 'version     = "5.100.0"' in lock
    assert validated == list(synthesized.stacks)


def test_plan_summary_counts_actions() -> None:
    plan = {
        "resource_changes": [
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["delete", "create"]}},
            {"change": {"actions": ["no-op"]}},
            {"change": {"actions": ["update"]}},
        ]
    }
    summary = PlanSummary.from_plan_json("routing", plan)
    assert summary.counts == {"create": 2, "replace": 1, "update": 1}
    assert summary.line().split() == [
        "routing",
        "2",
        "to",
        "create,",
        "1",
        "to",
        "update,",
        "1",
        "to",
        "replace",
    ]
