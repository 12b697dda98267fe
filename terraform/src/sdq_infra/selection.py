"""Which stacks a plan/apply/destroy touches, and in which order (pure: no cdktf import)."""

from __future__ import annotations

from collections.abc import Sequence

from sdq_infra.options import InfraError

RUNTIME_STACK_PREFIX = "runtime-"
# The API's runtime list (SDQ_RUNTIMES of the api_validator) lives in the routing stack.
ROUTING = "routing"


def select(stacks: Sequence[str], only: Sequence[str]) -> list[str]:
    """``only`` (or every stack), in dependency order; unknown names are refused."""
    unknown = sorted(set(only) - set(stacks))
    if unknown:
        raise InfraError(f"unknown stacks {unknown}; stacks are {list(stacks)}")
    return [stack for stack in stacks if not only or stack in only]


def apply_order(stacks: Sequence[str], only: Sequence[str]) -> list[str]:
    """The stacks an apply of ``only`` runs, in order.

    A runtime stack is self-contained (its queue, role, KEDA's grant on the queue), but the API
    only accepts tasks for runtimes in routing's list: applying a runtime stack without routing
    appends routing after it, so the runtime's queue and subscription exist before the API
    starts accepting its tasks.
    """
    chosen = select(stacks, only)
    runtimes = [stack for stack in chosen if stack.startswith(RUNTIME_STACK_PREFIX)]
    if runtimes and ROUTING not in chosen and ROUTING in stacks:
        chosen.append(ROUTING)
    return chosen
