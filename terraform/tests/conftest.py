"""Fixtures of the infrastructure tests: one synthesis per session, Lambda zips built once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sdq_contracts.config import DeploymentConfig, load_config
from sdq_infra.options import InfraOptions, find_repo_root

REPO = find_repo_root(Path(__file__).parent)
TESTS = Path(__file__).parent


@dataclass
class Synth:
    """A synthesized app: each stack's Terraform JSON, loaded."""

    cfg: DeploymentConfig
    outdir: Path
    stacks: tuple[str, ...]
    seconds: float
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stack_dir(self, stack: str) -> Path:
        return self.outdir / "stacks" / stack

    def json(self, stack: str) -> dict[str, Any]:
        if stack not in self._cache:
            self._cache[stack] = json.loads((self.stack_dir(stack) / "cdk.tf.json").read_text())
        return self._cache[stack]

    def resources(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self.json(stack).get("resource", {}).get(kind, {}))

    def all_resources(self, kind: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for stack in self.stacks:
            for name, body in self.resources(stack, kind).items():
                found[f"{stack}.{name}"] = body
        return found


def synthesize(cfg: DeploymentConfig, options: InfraOptions) -> Synth:
    from sdq_infra.app import synth  # cdktf starts Node.js on import: only when needed

    started = time.monotonic()
    result = synth(cfg, options)
    return Synth(cfg, result.outdir, result.stacks, time.monotonic() - started)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The repository's config.yaml, every stack, cloud mode (S3 backend)."""
    cfg = load_config(REPO / "config.yaml")
    build = tmp_path_factory.mktemp("build")
    return synthesize(cfg, InfraOptions(REPO, build, "sdq-test-tfstate"))


@pytest.fixture(scope="session")
def lambda_zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both Lambda zips, built once with the real builder."""
    from sdq_infra import package

    out = tmp_path_factory.mktemp("lambda")
    for service in package.LAMBDA_SERVICES:
        package.build(service, REPO, out)
    return out


@pytest.fixture(scope="session")
def emulator_config() -> DeploymentConfig:
    return load_config(TESTS / "emulator.yaml")


@pytest.fixture(scope="session")
def synth_app() -> Callable[[DeploymentConfig, InfraOptions], Synth]:
    """Synthesize another config in this session (jsii is started once per process)."""
    return synthesize
