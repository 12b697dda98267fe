"""plan / apply / destroy over every stack, in dependency order, with a readable summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdq_contracts.config import DeploymentConfig
from sdq_infra.app import Synthesized, synth
from sdq_infra.console import say
from sdq_infra.handoff import (
    K8S_OUTPUTS_FILE,
    check_agent_version,
    required_stacks,
    write_k8s_outputs,
)
from sdq_infra.options import InfraError, InfraOptions
from sdq_infra.selection import apply_order
from sdq_infra.selection import select as select_stacks
from sdq_infra.teardown import Boto3Inventory, Inventory, blockers, drain_cluster, refusal
from sdq_infra.terraform import PlanSummary, Terraform, terraform_env

# Without an explicit selection, destroy leaves the state bucket (it holds every other state).
KEEP_ON_DESTROY = frozenset({"state"})


def select(synthesized: Synthesized, only: Sequence[str]) -> list[str]:
    return select_stacks(synthesized.stacks, only)


def write_outputs(outputs: Mapping[str, Any], outputs_dir: Path, stack: str) -> Path:
    """``<outputs_dir>/<stack>.json``: a stack's non-sensitive outputs, ``{"name": value}``."""
    outputs_dir.mkdir(parents=True, exist_ok=True)
    path = outputs_dir / f"{stack}.json"
    path.write_text(json.dumps(dict(outputs), indent=2, sort_keys=True) + "\n")
    return path


def hand_off_to_k8s(
    cfg: DeploymentConfig, options: InfraOptions, agent_version: str | None
) -> None:
    """After an apply: write k8s.json for the overlay renderer, or say why it cannot be."""
    if options.emulator:
        say("\nk8s overlay: none in emulator mode (no cluster), so no k8s.json")
        return
    handoff = write_k8s_outputs(cfg, options.outputs_dir, agent_version)
    if handoff.path is not None:
        say(f"\nk8s overlay inputs: {handoff.path}")
    else:
        say(f"\nk8s overlay NOT renderable: {handoff.reason}")


def print_summary(title: str, summaries: list[PlanSummary], problems: dict[str, str]) -> None:
    say(f"\n{title}")
    for summary in summaries:
        say(f"  {summary.line()}")
    for stack, problem in problems.items():
        say(f"  {stack:<22} NOT PLANNED: {problem}")


def plan(
    cfg: DeploymentConfig,
    options: InfraOptions,
    only: Sequence[str] = (),
    apply: bool = False,
    agent_version: str | None = None,
) -> int:
    """Synthesize, then init + plan (+ apply) each stack in order.

    Planning alone continues past a stack that cannot be planned yet (its state bucket or an
    upstream stack is not applied) and says so; applying stops at the first failure, and after
    a complete apply writes the k8s overlay's inputs (:func:`hand_off_to_k8s`).
    """
    if agent_version:
        check_agent_version(agent_version)  # refuse a bad tag before changing anything
    synthesized = synth(cfg, options)
    env = terraform_env(options.build_dir)
    summaries: list[PlanSummary] = []
    problems: dict[str, str] = {}
    chosen = apply_order(synthesized.stacks, only) if apply else select(synthesized, only)
    for stack in chosen:
        say(f"\n==> {stack}")
        tf = Terraform(synthesized.stack_dir(stack), env)
        try:
            tf.init()
            summaries.append(tf.plan())
            if apply:
                tf.apply()
                say(f"    outputs: {write_outputs(tf.outputs(), options.outputs_dir, stack)}")
        except InfraError as exc:
            if apply:
                print_summary("applied before the failure:", summaries, {stack: str(exc)})
                raise
            problems[stack] = (
                f"{exc} (check `make doctor`; it may need an earlier stack applied first)"
            )
    print_summary("applied:" if apply else "plan summary:", summaries, problems)
    if apply:
        hand_off_to_k8s(cfg, options, agent_version)
    return 1 if problems else 0


def destroy(
    cfg: DeploymentConfig,
    options: InfraOptions,
    only: Sequence[str] = (),
    *,
    config_path: Path | None = None,
    inventory: Inventory | None = None,
    drain: bool = True,
) -> int:
    """Destroy in reverse order: first refuse if a bucket or registry holds data (saying what
    and how to remove it), then drain Karpenter's nodes while the cluster still exists, then
    each stack. Without --stacks the `state` stack is kept. ``drain=False`` (SKIP_DRAIN=yes) is
    for a cluster that is already gone or unreachable: then check EC2 for Karpenter's instances."""
    synthesized = synth(cfg, options)
    env = terraform_env(options.build_dir)
    stacks = select(synthesized, only)
    if not only:
        stacks = [stack for stack in stacks if stack not in KEEP_ON_DESTROY]
    if inventory is None:
        inventory = Boto3Inventory(cfg.region, options.emulator_endpoint)
    found = blockers(cfg, stacks, inventory, options.state_bucket)
    if found:
        raise InfraError(refusal(found))
    # Before anything goes: Karpenter (and its IAM role, in the cluster stack) must terminate
    # the GPU instances it launched, or they outlive the cluster and network.
    config = config_path or options.repo_root / "config.yaml"
    if drain and "cluster" in stacks and not drain_cluster(config, options.outputs_dir, say):
        return 1
    summaries: list[PlanSummary] = []
    for stack in reversed(stacks):
        say(f"\n==> destroying {stack}")
        tf = Terraform(synthesized.stack_dir(stack), env)
        tf.init()
        summaries.append(tf.plan(destroy=True))
        tf.apply()
        (options.outputs_dir / f"{stack}.json").unlink(missing_ok=True)
        if stack in required_stacks(cfg):
            # The overlay's inputs name what was just destroyed.
            (options.outputs_dir / K8S_OUTPUTS_FILE).unlink(missing_ok=True)
    print_summary("destroyed:", summaries, {})
    return 0
