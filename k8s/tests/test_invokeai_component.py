"""An InvokeAI runtime configured: the overlay renders, passes the schemas, and the runtime
container is started exactly as sdq_contracts.launch says (the conformance tests start the real
InvokeAI with the same function)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sdq_contracts.config import DeploymentConfig, RuntimeType, parse_config
from sdq_contracts.launch import runtime_launch
from sdq_k8s.outputs import parse_outputs
from sdq_k8s.render import RenderRequest, render_overlay
from sdq_k8s.validate import kustomize_build, validate_docs

pytestmark = pytest.mark.unit


class Rendered:
    def __init__(self, config: DeploymentConfig, docs: list[dict[str, Any]]) -> None:
        self.config = config
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        [match] = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        return match


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    cfg = parse_config(
        {
            "stack_name": "inv",
            "region": "us-east-2",
            "buckets": {"models": "inv-models", "outputs": "inv-outputs"},
            "runtimes": [
                {"name": "invoke", "type": "invokeai", "model": "dreamshaper_8.safetensors"},
                {"name": "sd", "type": "sdwebui", "dynamic_model": True},
            ],
        }
    )

    def rt(name: str) -> dict[str, str]:
        return {
            "queue_url": f"https://sqs.us-east-2.amazonaws.com/111122223333/inv-{name}-tasks",
            "role_arn": f"arn:aws:iam::111122223333:role/inv-{name}-pod",
            "image": f"111122223333.dkr.ecr.us-east-2.amazonaws.com/{name}:6.14.2",
        }

    outputs = parse_outputs(
        {
            "karpenter_instance_profile": "inv-karpenter-node",
            "result_topic_arn": "arn:aws:sns:us-east-2:111122223333:inv-results",
            "status_table_name": "inv-task-status",
            "output_bucket": "inv-outputs",
            "model_bucket": "inv-models",
            "images": {"queue_agent": "111122223333.dkr.ecr.us-east-2.amazonaws.com/agent:1.0.0"},
            "runtimes": {name: rt(name) for name in ("invoke", "sd")},
        }
    )
    out_dir = tmp_path_factory.mktemp("invokeai") / "dev"
    render_overlay(RenderRequest(env="dev", config=cfg, outputs=outputs, out_dir=out_dir))
    return Rendered(cfg, kustomize_build(out_dir))


def _containers(r: Rendered, deployment: str) -> dict[str, dict[str, Any]]:
    deploy = r.one("Deployment", deployment)
    return {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}


def test_overlay_with_an_invokeai_runtime_passes_the_schemas(rendered: Rendered) -> None:
    assert validate_docs(rendered.docs, rendered.config.cluster.kubernetes_version) == []
    names = {d["metadata"]["name"] for d in rendered.of_kind("ScaledObject")}
    assert names == {"invoke-runtime", "sd-runtime"}


def test_invokeai_container_is_launched_as_sdq_contracts_says(rendered: Rendered) -> None:
    launch = runtime_launch(RuntimeType.INVOKEAI)
    runtime = _containers(rendered, "invoke-runtime")["runtime"]
    assert tuple(runtime["args"]) == launch.args
    assert {(e["name"], e["value"]) for e in runtime["env"]} == set(launch.env)
    assert [p["containerPort"] for p in runtime["ports"]] == [launch.port]
    assert runtime["startupProbe"]["httpGet"]["path"] == launch.health_path
    assert runtime["image"].endswith("/invoke:6.14.2")
    mounts = {m["mountPath"]: m for m in runtime["volumeMounts"]}
    # The root is writable (its own volume); the model cache is read-only at /models.
    [root] = [a.split("=", 1)[1] for a in launch.args if a.startswith("--root=")]
    assert root in mounts and not mounts[root].get("readOnly", False)
    assert mounts["/models"]["readOnly"] is True
    volumes = {
        v["name"]: v
        for v in rendered.one("Deployment", "invoke-runtime")["spec"]["template"]["spec"]["volumes"]
    }
    assert "emptyDir" in volumes[mounts[root]["name"]]
    assert volumes["model-cache"]["hostPath"]["path"].endswith("sdq-models")


def test_agent_reaches_invokeai_and_knows_where_the_cache_is(rendered: Rendered) -> None:
    agent = _containers(rendered, "invoke-runtime")["queue-agent"]
    env = dict(rendered.one("ConfigMap", agent["envFrom"][0]["configMapRef"]["name"])["data"])
    assert env["SDQ_RUNTIME_TYPE"] == "invokeai"
    assert env["SDQ_RUNTIME_URL"] == f"http://127.0.0.1:{runtime_launch(RuntimeType.INVOKEAI).port}"
    assert env["SDQ_RUNTIME_MODELS_DIR"] == "/models"
    assert env["SDQ_STATIC_MODEL"] == "dreamshaper_8.safetensors"
    # The other runtime keeps its own component.
    other = _containers(rendered, "sd-runtime")["queue-agent"]
    other_env = rendered.one("ConfigMap", other["envFrom"][0]["configMapRef"]["name"])["data"]
    assert other_env["SDQ_RUNTIME_TYPE"] == "sdwebui" and "SDQ_RUNTIME_MODELS_DIR" not in other_env


def test_component_files_exist_for_every_runtime_type() -> None:
    components = Path(__file__).resolve().parents[1] / "components"
    assert {t.value for t in RuntimeType} <= {p.name for p in components.iterdir() if p.is_dir()}
