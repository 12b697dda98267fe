"""Render overlays once per session (each render runs `kubectl kustomize`, ~0.2 s)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sdq_contracts.config import DeploymentConfig, load_config, parse_config
from sdq_k8s.outputs import EXAMPLE_OUTPUTS, IacOutputs, load_outputs, parse_outputs
from sdq_k8s.render import K8S_ROOT, NODE_SYNC_SCRIPT, RenderRequest, render_overlay
from sdq_k8s.validate import kustomize_build

# Sibling helper modules (test_launch_args) are imported by name (pytest --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))

REPO_ROOT = K8S_ROOT.parent


@dataclass(frozen=True)
class Rendered:
    config: DeploymentConfig
    outputs: IacOutputs
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        matches = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
        return matches[0]


def _render(tmp: Path, cfg: DeploymentConfig, outputs: IacOutputs) -> Rendered:
    out_dir = tmp / "dev"
    render_overlay(RenderRequest(env="dev", config=cfg, outputs=outputs, out_dir=out_dir))
    return Rendered(cfg, outputs, kustomize_build(out_dir))


def three_runtime_config() -> DeploymentConfig:
    """A second deployment: three runtimes with distinct knobs (cooldown below task timeout,
    on-demand only, other instance types)."""

    def runtime(name: str, typ: str, **knobs: Any) -> dict[str, Any]:
        return {"name": name, "type": typ, **knobs}

    return parse_config(
        {
            "stack_name": "gen",
            "region": "eu-west-1",
            "buckets": {"models": "gen-models", "outputs": "gen-outputs"},
            "cluster": {"namespace": "imaging"},
            "runtimes": [
                runtime(
                    "sd15",
                    "sdwebui",
                    model="v1-5.safetensors",
                    task_timeout_seconds=120,
                    scaling={"max_replicas": 2, "cooldown_seconds": 60},
                ),
                runtime(
                    "sdxl",
                    "sdwebui",
                    model="sdxl.safetensors",
                    image="reg.example/sdxl@sha256:" + "a" * 64,
                    capacity_types=["on-demand"],
                    instance_types=["g6e.xlarge"],
                    scaling={
                        "max_replicas": 8,
                        "target_backlog_per_pod": 3,
                        "activation_backlog": 2,
                    },
                ),
                runtime("flows", "comfyui", dynamic_model=True, task_timeout_seconds=1800),
            ],
        },
        "three-runtimes",
    )


def three_runtime_outputs() -> IacOutputs:
    def rt(name: str) -> dict[str, str]:
        return {
            "queue_url": f"https://sqs.eu-west-1.amazonaws.com/444455556666/gen-{name}-tasks",
            "role_arn": f"arn:aws:iam::444455556666:role/gen-{name}-pod",
            "image": f"444455556666.dkr.ecr.eu-west-1.amazonaws.com/{name}:2.0.1",
        }

    # `terraform output -json` shape on purpose.
    return parse_outputs(
        {
            key: {"value": value, "type": "string", "sensitive": False}
            for key, value in {
                "karpenter_instance_profile": "gen-karpenter-node",
                "result_topic_arn": "arn:aws:sns:eu-west-1:444455556666:gen-results",
                "status_table_name": "gen-task-status",
                "output_bucket": "gen-outputs",
                "model_bucket": "gen-models",
                "images": {
                    "queue_agent": "444455556666.dkr.ecr.eu-west-1.amazonaws.com/sdq-queue-agent:1.4.2"
                },
                "runtimes": {name: rt(name) for name in ("sd15", "sdxl", "flows")},
            }.items()
        }
    )


@pytest.fixture(scope="session")
def node_sync_script() -> str:
    if not NODE_SYNC_SCRIPT.is_file():
        pytest.fail(
            f"the node sync script {NODE_SYNC_SCRIPT} is missing (services/model_sync owns it)"
        )
    return NODE_SYNC_SCRIPT.read_text(encoding="utf-8")


@pytest.fixture(scope="session", params=["example-dev", "three-runtimes"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, node_sync_script: str
) -> Rendered:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "example-dev":
        return _render(tmp, load_config(REPO_ROOT / "config.yaml"), load_outputs(EXAMPLE_OUTPUTS))
    return _render(tmp, three_runtime_config(), three_runtime_outputs())
