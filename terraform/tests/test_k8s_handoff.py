"""`make apply` → build/outputs/k8s.json → the k8s overlay: the two halves fit together.

The per-stack output files are written by `deploy.write_outputs` from the *synthesized* stacks'
own outputs, each `${resource.attribute}` resolved to the value AWS would report for that
resource (its configured name, this test's account and region), so a renamed output, a name
that drifts between Terraform and the overlay, or a pod identity association without a rendered
service account fails here. No example values are involved.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.handoff import (
    HandoffError,
    build_k8s_outputs,
    check_agent_version,
    required_stacks,
    write_k8s_outputs,
)

if TYPE_CHECKING:
    from conftest import Synth

# cdktf synth (node + jsii): seconds to minutes per app on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]

ACCOUNT = "210987654321"
AGENT_VERSION = "0.3.1"
_REF = re.compile(r"\$\{([^}]*)\}")


def with_runtime_images(cfg: DeploymentConfig) -> DeploymentConfig:
    """The config with every runtime naming its (pinned) image, as a deployable config does."""
    registry = f"{ACCOUNT}.dkr.ecr.{cfg.region}.amazonaws.com"
    runtimes = tuple(
        rt.model_copy(update={"image": f"{registry}/{rt.type.value}:1.10.{i}"})
        for i, rt in enumerate(cfg.runtimes)
    )
    return cfg.model_copy(update={"runtimes": runtimes})


class FakeAws:
    """Resolves a synthesized output to what `terraform output -json` would report."""

    def __init__(self, synth: Synth) -> None:
        self.synth = synth
        self.region = synth.cfg.region

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, item) for item in value]
        if not isinstance(value, str):
            return value
        return _REF.sub(lambda m: self._attribute(stack, m.group(1)), value)

    def _attribute(self, stack: str, ref: str) -> str:
        parts = ref.split(".")
        if parts[0] == "data":
            return {"partition": "aws", "account_id": ACCOUNT}[parts[-1]]
        kind, resource_id, attr = parts[0], parts[1], parts[2]
        body = self.synth.resources(stack, kind)[resource_id]
        name = self.resolve(stack, body.get("name") or body.get("bucket") or resource_id)
        region, account = self.region, ACCOUNT
        known = {
            ("aws_sqs_queue", "url"): f"https://sqs.{region}.amazonaws.com/{account}/{name}",
            ("aws_sqs_queue", "arn"): f"arn:aws:sqs:{region}:{account}:{name}",
            ("aws_sqs_queue", "name"): name,
            ("aws_iam_role", "arn"): f"arn:aws:iam::{account}:role/{name}",
            ("aws_iam_role", "name"): name,
            ("aws_iam_instance_profile", "name"): name,
            ("aws_sns_topic", "arn"): f"arn:aws:sns:{region}:{account}:{name}",
            ("aws_s3_bucket", "bucket"): name,
            ("aws_dynamodb_table", "name"): name,
            ("aws_eks_cluster", "name"): name,
            ("aws_ecr_repository", "repository_url"): (
                f"{account}.dkr.ecr.{region}.amazonaws.com/{name}"
            ),
            ("aws_lambda_function", "function_name"): self.resolve(
                stack, body.get("function_name", resource_id)
            ),
        }
        # Outputs the hand-off does not read get a recognisable stand-in.
        return known.get((kind, attr), f"{kind}.{resource_id}.{attr}")

    def stack_outputs(self, stack: str) -> dict[str, Any]:
        """Non-sensitive outputs, as `Terraform.outputs()` returns them."""
        declared = self.synth.json(stack).get("output", {})
        return {
            name: self.resolve(stack, item["value"])
            for name, item in declared.items()
            if not item.get("sensitive")
        }


@pytest.fixture(scope="module")
def applied(synthesized: Synth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """build/outputs after a full `make apply` of the repo's config.yaml (every stack)."""
    from sdq_infra.deploy import write_outputs  # imports cdktf: only with the synthesis

    outputs_dir = tmp_path_factory.mktemp("outputs")
    aws = FakeAws(synthesized)
    for stack in synthesized.stacks:
        write_outputs(aws.stack_outputs(stack), outputs_dir, stack)
    return outputs_dir


def test_k8s_json_renders_a_valid_overlay_with_the_applied_values(
    synthesized: Synth, applied: Path, tmp_path: Path
) -> None:
    from sdq_k8s.outputs import resolve_outputs
    from sdq_k8s.render import RenderRequest, render_overlay
    from sdq_k8s.validate import kustomize_build, validate_docs

    cfg = with_runtime_images(synthesized.cfg)
    handoff = write_k8s_outputs(cfg, applied, AGENT_VERSION)
    assert handoff.path == applied / "k8s.json", handoff.reason
    outputs, source = resolve_outputs(applied)
    assert source == applied / "k8s.json"
    assert not outputs.example
    overlay = tmp_path / "prod"
    render_overlay(RenderRequest(env="prod", config=cfg, outputs=outputs, out_dir=overlay))
    docs = kustomize_build(overlay)
    assert validate_docs(docs, cfg.cluster.kubernetes_version) == []
    text = json.dumps(docs)
    assert "111122223333" not in text
    assert "EXAMPLE" not in text

    (nodeclass,) = [d for d in docs if d["kind"] == "EC2NodeClass"]
    profile = synthesized.resources("cluster", "aws_iam_instance_profile")
    assert [p["name"] for p in profile.values()] == [nodeclass["spec"]["instanceProfile"]]
    assert nodeclass["spec"]["instanceProfile"] == names.role_name(cfg, "karpenter-node")
    assert "role" not in nodeclass["spec"]

    registry = f"{ACCOUNT}.dkr.ecr.{cfg.region}.amazonaws.com"
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    for rt in cfg.runtimes:
        (deploy,) = [
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{rt.name}-runtime"
        ]
        containers = {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}
        agent = containers["queue-agent"]
        assert agent["image"] == (
            f"{registry}/{naming.queue_agent_repository_name(cfg)}:{AGENT_VERSION}"
        )
        assert {c["image"] for c in containers.values()} == {agent["image"], rt.image}
        env = config_maps[agent["envFrom"][0]["configMapRef"]["name"]]
        assert env["SDQ_QUEUE_URL"] == (
            f"https://sqs.{cfg.region}.amazonaws.com/{ACCOUNT}/{naming.queue_name(cfg, rt)}"
        )
        assert env["SDQ_RESULT_TOPIC_ARN"] == (
            f"arn:aws:sns:{cfg.region}:{ACCOUNT}:{naming.output_topic_name(cfg)}"
        )
        assert env["SDQ_STATUS_TABLE"] == naming.status_table_name(cfg)
        assert env["SDQ_MODEL_BUCKET"] == cfg.buckets.models
        assert env["SDQ_OUTPUT_BUCKET"] == cfg.buckets.outputs


def test_every_pod_identity_association_has_its_service_account(
    synthesized: Synth, applied: Path, tmp_path: Path
) -> None:
    """Runtimes and the collector: rendered by the overlay; KEDA and Karpenter: their Helm
    charts' accounts, installed with the names k8s/README.md passes (sdq_contracts.naming)."""
    from sdq_k8s.outputs import resolve_outputs
    from sdq_k8s.render import RenderRequest, render_overlay
    from sdq_k8s.validate import kustomize_build

    cfg = with_runtime_images(synthesized.cfg)
    assert write_k8s_outputs(cfg, applied, AGENT_VERSION).path is not None
    overlay = tmp_path / "dev"
    outputs, _ = resolve_outputs(applied)
    render_overlay(RenderRequest(env="dev", config=cfg, outputs=outputs, out_dir=overlay))
    docs = kustomize_build(overlay)
    rendered = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    associations = {
        (a["namespace"], a["service_account"])
        for a in synthesized.all_resources("aws_eks_pod_identity_association").values()
    }
    helm_installed = {
        (naming.KARPENTER_NAMESPACE, naming.KARPENTER_SERVICE_ACCOUNT),
        (naming.KEDA_NAMESPACE, naming.KEDA_SERVICE_ACCOUNT),
    }
    assert associations - rendered == helm_installed
    ns = naming.workload_namespace(cfg)
    assert (ns, naming.COLLECTOR_SERVICE_ACCOUNT) in associations & rendered
    for rt in cfg.runtimes:
        assert (ns, naming.service_account_name(rt)) in associations & rendered
    # `make platform` (sdq_k8s.platform) installs both charts with exactly these accounts.
    from sdq_k8s.outputs import ClusterOutputs
    from sdq_k8s.platform import KARPENTER, KEDA, helm_settings, target_for

    target = target_for(
        cfg, ClusterOutputs(cluster_name="c", karpenter_interruption_queue="q"), tmp_path
    )
    assert KARPENTER.namespace == naming.KARPENTER_NAMESPACE
    assert helm_settings(KARPENTER, target)["serviceAccount.name"] == (
        naming.KARPENTER_SERVICE_ACCOUNT
    )
    assert KEDA.namespace == naming.KEDA_NAMESPACE
    assert helm_settings(KEDA, target)["serviceAccount.operator.name"] == (
        naming.KEDA_SERVICE_ACCOUNT
    )


# --- the hand-off's refusals (no synthesis needed) -------------------------------------------


def _outputs(cfg: DeploymentConfig) -> dict[str, dict[str, Any]]:
    """Per-stack outputs as write_outputs stores them, for a config without synthesis."""
    base = f"arn:aws:sns:{cfg.region}:{ACCOUNT}:{naming.output_topic_name(cfg)}"
    shared = {
        "result_topic_arn": base,
        "status_table": naming.status_table_name(cfg),
        "output_bucket": cfg.buckets.outputs,
        "model_bucket": cfg.buckets.models,
    }
    outputs: dict[str, dict[str, Any]] = {
        "registry": {
            "queue_agent_repository_url": f"{ACCOUNT}.dkr.ecr.{cfg.region}.amazonaws.com/"
            + naming.queue_agent_repository_name(cfg)
        },
        "cluster": {"karpenter_instance_profile": names.role_name(cfg, "karpenter-node")},
        "routing": {
            "output_topic_arn": base,
            "status_table": naming.status_table_name(cfg),
            "output_bucket": cfg.buckets.outputs,
        },
        "model_sync": {"model_bucket": cfg.buckets.models},
    }
    for rt in cfg.runtimes:
        outputs[names.runtime_stack_id(rt)] = shared | {
            "queue_url": f"https://sqs.{cfg.region}.amazonaws.com/{ACCOUNT}/{naming.queue_name(cfg, rt)}",
            "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{names.runtime_role_name(cfg, rt)}",
        }
    return outputs


def _write(outputs_dir: Path, outputs: dict[str, dict[str, Any]]) -> None:
    outputs_dir.mkdir(parents=True, exist_ok=True)
    for stack, values in outputs.items():
        (outputs_dir / f"{stack}.json").write_text(json.dumps(values))


@pytest.fixture
def cfg(emulator_config: DeploymentConfig) -> DeploymentConfig:
    return with_runtime_images(emulator_config)


def test_without_agent_version_no_k8s_json_is_written_and_a_stale_one_goes(
    cfg: DeploymentConfig, tmp_path: Path
) -> None:
    _write(tmp_path, _outputs(cfg))
    (tmp_path / "k8s.json").write_text("{}")
    handoff = write_k8s_outputs(cfg, tmp_path, None)
    assert handoff.path is None
    assert "cannot be rendered until one is released" in handoff.reason
    assert "make release SERVICE=queue_agent" in handoff.reason
    assert not (tmp_path / "k8s.json").exists()


@pytest.mark.parametrize("version", ["latest", "", "1.0 beta", "-rc1", "sha256:abc"])
def test_unpinnable_agent_versions_are_refused(version: str) -> None:
    with pytest.raises(HandoffError, match="not a pinnable image tag"):
        check_agent_version(version)


def test_a_digest_version_pins_by_digest(cfg: DeploymentConfig) -> None:
    digest = "sha256:" + "0" * 64
    content = build_k8s_outputs(cfg, _outputs(cfg), digest)
    assert content["images"]["queue_agent"].endswith(f"/emu/queue-agent@{digest}")


def test_missing_stack_outputs_are_named(cfg: DeploymentConfig, tmp_path: Path) -> None:
    outputs = _outputs(cfg)
    del outputs["cluster"]
    _write(tmp_path, outputs)
    handoff = write_k8s_outputs(cfg, tmp_path, AGENT_VERSION)
    assert handoff.path is None
    assert "no outputs of stack(s) cluster" in handoff.reason
    assert set(required_stacks(cfg)) - {"cluster"} <= {p.stem for p in tmp_path.glob("*.json")}


def test_runtime_without_image_in_config_blocks_the_overlay(
    emulator_config: DeploymentConfig, tmp_path: Path
) -> None:
    _write(tmp_path, _outputs(emulator_config))
    handoff = write_k8s_outputs(emulator_config, tmp_path, AGENT_VERSION)
    assert handoff.path is None
    assert "runtimes[].image" in handoff.reason
    assert all(rt.name in handoff.reason for rt in emulator_config.runtimes)


def test_outputs_of_different_applies_are_refused(cfg: DeploymentConfig) -> None:
    outputs = _outputs(cfg)
    outputs["routing"]["status_table"] = "old-task-status"
    with pytest.raises(HandoffError, match="different applies"):
        build_k8s_outputs(cfg, outputs, AGENT_VERSION)


def test_k8s_json_has_exactly_what_the_renderer_reads(cfg: DeploymentConfig) -> None:
    from sdq_k8s.outputs import parse_outputs

    content = build_k8s_outputs(cfg, _outputs(cfg), AGENT_VERSION)
    parsed = parse_outputs(content, "handoff")
    assert set(parsed.runtimes) == {rt.name for rt in cfg.runtimes}
    assert all(out.image is None for out in parsed.runtimes.values())  # images: config only
    assert parsed.images.queue_agent.endswith(f"/emu/queue-agent:{AGENT_VERSION}")
