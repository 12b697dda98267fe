"""plan / apply / destroy over every stack, in dependency order, with a readable summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sdq_contracts.config import DeploymentConfig
from sdq_infra.app import Synthesized, synth
from sdq_infra.console import say
from sdq_infra.options import InfraError, InfraOptions
from sdq_infra.terraform import PlanSummary, Terraform, terraform_env

# Without an explicit selection, destroy leaves the state bucket (it holds every other state).
KEEP_ON_DESTROY = frozenset({"state"})


def select(synthesized: Synthesized, only: Sequence[str]) -> list[str]:
    unknown = sorted(set(only) - set(synthesized.stacks))
    if unknown:
        raise InfraError(f"unknown stacks {unknown}; stacks are {list(synthesized.stacks)}")
    return [stack for stack in synthesized.stacks if not only or stack in only]


def write_outputs(tf: Terraform, outputs_dir: Path, stack: str) -> Path:
    outputs_dir.mkdir(parents=True, exist_ok=True)
    path = outputs_dir / f"{stack}.json"
    path.write_text(json.dumps(tf.outputs(), indent=2, sort_keys=True) + "\n")
    return path


def print_summary(title: str, summaries: list[PlanSummary], problems: dict[str, str]) -> None:
    say(f"\n{title}")
    for summary in summaries:
        say(f"  {summary.line()}")
    for stack, problem in problems.items():
        say(f"  {stack:<22} NOT PLANNED: {problem}")


def plan(
    cfg: DeploymentConfig, options: InfraOptions, only: Sequence[str] = (), apply: bool = False
) -> int:
    """Synthesize, then init + plan (+ apply) each stack in order.

    Planning alone continues past a stack that cannot be planned yet (its state bucket or an
    upstream stack is not applied) and says so; applying stops at the first failure.
    """
    synthesized = synth(cfg, options)
    env = terraform_env(options.build_dir)
    summaries: list[PlanSummary] = []
    problems: dict[str, str] = {}
    for stack in select(synthesized, only):
        say(f"\n==> {stack}")
        tf = Terraform(synthesized.stack_dir(stack), env)
        try:
            tf.init()
            summaries.append(tf.plan())
            if apply:
                tf.apply()
                say(f"    outputs: {write_outputs(tf, options.outputs_dir, stack)}")
        except InfraError as exc:
            if apply:
                print_summary("applied before the failure:", summaries, {stack: str(exc)})
                raise
            problems[stack] = (
                f"{exc} (check `make doctor`; it may need an earlier stack applied first)"
            )
    print_summary("applied:" if apply else "plan summary:", summaries, problems)
    return 1 if problems else 0


def destroy(cfg: DeploymentConfig, options: InfraOptions, only: Sequence[str] = ()) -> int:
    synthesized = synth(cfg, options)
    env = terraform_env(options.build_dir)
    stacks = select(synthesized, only)
    if not only:
        stacks = [stack for stack in stacks if stack not in KEEP_ON_DESTROY]
    summaries: list[PlanSummary] = []
    for stack in reversed(stacks):
        say(f"\n==> destroying {stack}")
        tf = Terraform(synthesized.stack_dir(stack), env)
        tf.init()
        summaries.append(tf.plan(destroy=True))
        tf.apply()
        (options.outputs_dir / f"{stack}.json").unlink(missing_ok=True)
    print_summary("destroyed:", summaries, {})
    return 0
