"""Which stacks apply/destroy touch, what destroy refuses and the drain hook (no cdktf)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdq_contracts.config import load_config
from sdq_infra.options import InfraError, find_repo_root
from sdq_infra.selection import apply_order, select
from sdq_infra.teardown import blockers, drain_cluster, refusal

pytestmark = pytest.mark.unit

REPO = find_repo_root(Path(__file__).parent)
CFG = load_config(REPO / "config.yaml")
STACKS = (
    "state", "registry", "network", "cluster", "routing", "model_sync",
    "runtime-sdruntime", "runtime-comfyui",
)  # fmt: skip


def test_applying_a_runtime_stack_also_applies_routing_after_it() -> None:
    """The API's runtime list lives in routing: without it the new runtime is refused."""
    assert apply_order(STACKS, ["runtime-comfyui"]) == ["runtime-comfyui", "routing"]
    assert apply_order(STACKS, ["routing", "runtime-comfyui"]) == ["routing", "runtime-comfyui"]
    assert apply_order(STACKS, ["cluster"]) == ["cluster"]
    assert apply_order(STACKS, []) == list(STACKS)


def test_unknown_stacks_are_refused() -> None:
    with pytest.raises(InfraError, match="unknown stacks"):
        select(STACKS, ["runtime-nope"])


class FakeInventory:
    def __init__(self, objects: dict[str, int], images: dict[str, int]) -> None:
        self.objects = objects
        self.images = images

    def bucket_objects(self, bucket: str) -> int | None:
        return self.objects.get(bucket)

    def repository_images(self, repository: str) -> int | None:
        return self.images.get(repository)


def test_destroy_names_what_it_refuses_to_delete_and_how_to_remove_it() -> None:
    inventory = FakeInventory(
        {CFG.buckets.outputs: 12, CFG.buckets.models: 0}, {"sdq/queue-agent": 3}
    )
    found = blockers(CFG, STACKS[1:], inventory, "sdq-tfstate")
    assert [(b.stack, b.what) for b in found] == [
        ("routing", f"bucket {CFG.buckets.outputs} is not empty (12+ objects or versions)"),
        ("registry", "ECR repository sdq/queue-agent holds 3 image(s)"),
    ]
    message = refusal(found)
    assert f"aws s3 rm s3://{CFG.buckets.outputs} --recursive" in message
    assert "aws ecr delete-repository --force --repository-name sdq/queue-agent" in message
    assert "make destroy CONFIRM=yes" in message


def test_only_the_selected_stacks_data_blocks() -> None:
    inventory = FakeInventory({CFG.buckets.outputs: 5, "sdq-tfstate": 9}, {"sdq/sdwebui": 1})
    assert blockers(CFG, ["runtime-comfyui", "model_sync"], inventory, "sdq-tfstate") == []
    assert [b.stack for b in blockers(CFG, ["state"], inventory, "sdq-tfstate")] == ["state"]
    assert [b.what for b in blockers(CFG, ["registry"], inventory, "x")] == [
        "ECR repository sdq/sdwebui holds 1 image(s)"
    ]


def test_drain_hook_runs_the_k8s_drain_and_stops_destroy_when_it_fails(tmp_path: Path) -> None:
    said: list[str] = []
    commands: list[list[str]] = []

    def runner(code: int):  # type: ignore[no-untyped-def]
        def run(command: list[str]) -> int:
            commands.append(command)
            return code

        return run

    config = tmp_path / "config.yaml"
    # No cluster outputs: nothing was applied, nothing to drain.
    assert drain_cluster(config, tmp_path, said.append, runner(3))
    assert commands == []
    assert "no cluster of this deployment to drain" in said[-1]
    (tmp_path / "cluster.json").write_text("{}")
    assert drain_cluster(config, tmp_path, said.append, runner(0))
    assert commands[0][1:] == [
        "-m", "sdq_k8s", "platform", "drain", "--config", str(config), "--outputs", str(tmp_path),
    ]  # fmt: skip
    assert not drain_cluster(config, tmp_path, said.append, runner(3))
    assert "the cluster is kept" in said[-1]
