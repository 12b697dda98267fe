"""The cdktf app: every stack of a deployment, in dependency order, synthesized to JSON."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cdktf import App

from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.options import InfraOptions
from sdq_infra.stacks.base import SdqStack
from sdq_infra.stacks.cluster import ClusterStack
from sdq_infra.stacks.foundation import RegistryStack, StateStack
from sdq_infra.stacks.model_sync import ModelSyncStack
from sdq_infra.stacks.network import NetworkStack
from sdq_infra.stacks.routing import RoutingStack
from sdq_infra.stacks.runtime import RuntimeStack


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    # Stack ids in dependency order (apply in this order, destroy in reverse).
    stacks: tuple[str, ...]

    def stack_dir(self, stack: str) -> Path:
        return self.outdir / "stacks" / stack


def stack_order(cfg: DeploymentConfig, emulator: bool) -> tuple[str, ...]:
    runtimes = tuple(names.runtime_stack_id(runtime) for runtime in cfg.runtimes)
    if emulator:
        return ("routing", "model_sync", *runtimes)
    return ("state", "registry", "network", "cluster", "routing", "model_sync", *runtimes)


def build_app(cfg: DeploymentConfig, options: InfraOptions) -> App:
    app = App(outdir=str(options.outdir))
    builders: dict[str, Callable[[], SdqStack]] = {
        "state": lambda: StateStack(app, cfg, options),
        "registry": lambda: RegistryStack(app, cfg, options),
        "network": lambda: NetworkStack(app, cfg, options),
        "cluster": lambda: ClusterStack(app, cfg, options),
        "routing": lambda: RoutingStack(app, cfg, options),
        "model_sync": lambda: ModelSyncStack(app, cfg, options),
    }
    for runtime in cfg.runtimes:
        builders[names.runtime_stack_id(runtime)] = partial(
            RuntimeStack, app, cfg, options, runtime
        )
    for stack in stack_order(cfg, options.emulator):
        builders[stack]()
    return app


def synth(cfg: DeploymentConfig, options: InfraOptions) -> Synthesized:
    """Synthesize every stack into ``options.outdir`` (replacing what was there)."""
    shutil.rmtree(options.outdir / "stacks", ignore_errors=True)
    options.outdir.mkdir(parents=True, exist_ok=True)
    build_app(cfg, options).synth()
    return Synthesized(options.outdir, stack_order(cfg, options.emulator))
