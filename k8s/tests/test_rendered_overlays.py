"""Rules the rendered overlays must keep (issue 7), checked on `kubectl kustomize` output."""

from __future__ import annotations

from typing import Any

import pytest

from sdq_contracts import naming
from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import COMFYUI_DATA_DIR
from sdq_k8s.outputs import image_is_pinned
from sdq_k8s.render import DEFAULT_AMI_ALIAS
from sdq_k8s.validate import validate_docs

pytestmark = pytest.mark.integration  # `kubectl kustomize` per overlay, schemas

CLUSTER_SCOPED = {"Namespace", "NodePool", "EC2NodeClass"}


def _workers(r: Any) -> list[dict[str, Any]]:
    return [d for d in r.of_kind("Deployment") if d["metadata"]["name"] != "otel-collector"]


def _container(deploy: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _agent_env(r: Any, deploy: dict[str, Any]) -> dict[str, str]:
    agent = _container(deploy, "queue-agent")
    cm_name = agent["envFrom"][0]["configMapRef"]["name"]
    return dict(r.one("ConfigMap", cm_name)["data"])


def _worker_of(r: Any, runtime_name: str) -> dict[str, Any]:
    return r.one("Deployment", f"{runtime_name}-runtime")


def test_every_object_passes_its_schema(rendered: Any) -> None:
    kinds = {d["kind"] for d in rendered.docs}
    assert {
        "ScaledObject",
        "TriggerAuthentication",
        "NodePool",
        "EC2NodeClass",
        "Deployment",
    } <= kinds
    assert validate_docs(rendered.docs, rendered.config.cluster.kubernetes_version) == []


def test_every_configured_runtime_has_its_own_queue_role_and_account(rendered: Any) -> None:
    assert len(_workers(rendered)) == len(rendered.config.runtimes)
    for rt in rendered.config.runtimes:
        out = rendered.outputs.runtimes[rt.name]
        deploy = _worker_of(rendered, rt.name)
        env = _agent_env(rendered, deploy)
        assert env["SDQ_QUEUE_URL"] == out.queue_url
        assert env["SDQ_RUNTIME_NAME"] == rt.name
        assert env["SDQ_RUNTIME_TYPE"] == rt.type.value
        assert env["SDQ_TASK_TIMEOUT_SECONDS"] == str(rt.task_timeout_seconds)
        assert env["SDQ_MAX_RECEIVE_COUNT"] == str(rt.max_receive_count)
        assert env["SDQ_DYNAMIC_MODEL"] == str(rt.dynamic_model).lower()
        assert env.get("SDQ_STATIC_MODEL") == rt.model
        assert env["SDQ_DOWNLOAD_LINK_SECONDS"] == str(rendered.config.downloads.link_seconds)
        sa_name = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        assert sa_name == naming.service_account_name(rt)
        sa = rendered.one("ServiceAccount", sa_name)
        assert sa["metadata"]["annotations"]["sdq/pod-identity-role-arn"] == out.role_arn
    queue_urls = {_agent_env(rendered, d)["SDQ_QUEUE_URL"] for d in _workers(rendered)}
    assert len(queue_urls) == len(rendered.config.runtimes)


def test_agent_env_covers_the_runtime_contract(rendered: Any) -> None:
    required = {
        "SDQ_RUNTIME_NAME", "SDQ_RUNTIME_TYPE", "SDQ_RUNTIME_URL", "SDQ_DYNAMIC_MODEL", "SDQ_QUEUE_URL",
        "SDQ_RESULT_TOPIC_ARN", "SDQ_STATUS_TABLE", "SDQ_OUTPUT_BUCKET", "SDQ_MODEL_BUCKET",
        "SDQ_TASK_TIMEOUT_SECONDS", "SDQ_MAX_RECEIVE_COUNT", "SDQ_HTTP_PORT", "SDQ_DRAIN_FILE",
        "SDQ_DRAIN_SECONDS", "AWS_REGION", "OTEL_EXPORTER_OTLP_ENDPOINT",
    }  # fmt: skip
    for deploy in _workers(rendered):
        env = _agent_env(rendered, deploy)
        assert required <= set(env), required - set(env)
        assert env["AWS_REGION"] == rendered.config.region
        assert env["SDQ_RESULT_TOPIC_ARN"] == rendered.outputs.result_topic_arn
        port = {"sdwebui": "7860", "comfyui": "8188"}[env["SDQ_RUNTIME_TYPE"]]
        assert env["SDQ_RUNTIME_URL"] == f"http://127.0.0.1:{port}"
        ports = [p["containerPort"] for p in _container(deploy, "runtime")["ports"]]
        assert ports == [int(port)]


def test_scale_on_in_flight_sits_in_the_trigger_metadata(rendered: Any) -> None:
    for so in rendered.of_kind("ScaledObject"):
        assert "scaleOnInFlight" not in so["spec"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "aws-sqs-queue"
        meta = trigger["metadata"]
        assert meta["scaleOnInFlight"] == "true"
        assert meta["queueURLFromEnv"] == "SDQ_QUEUE_URL"
        assert meta["awsRegion"] == rendered.config.region
        assert "identityOwner" not in meta  # deprecated since KEDA 2.13


def test_scaled_object_targets_the_renamed_deployment_and_auth(rendered: Any) -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered.of_kind("Deployment")}
    auths = {a["metadata"]["name"]: a for a in rendered.of_kind("TriggerAuthentication")}
    for rt in rendered.config.runtimes:
        so = rendered.one("ScaledObject", f"{rt.name}-runtime")
        target = so["spec"]["scaleTargetRef"]
        assert target["name"] == f"{rt.name}-runtime" in deployments
        _container(deployments[target["name"]], target["envSourceContainerName"])  # exists
        auth_name = so["spec"]["triggers"][0]["authenticationRef"]["name"]
        assert auth_name == f"{rt.name}-keda-aws"
        assert auths[auth_name]["spec"]["podIdentity"]["provider"] == "aws"


def test_keda_numbers_come_from_config(rendered: Any) -> None:
    for rt in rendered.config.runtimes:
        spec = rendered.one("ScaledObject", f"{rt.name}-runtime")["spec"]
        assert spec["minReplicaCount"] == rt.scaling.min_replicas
        assert spec["maxReplicaCount"] == rt.scaling.max_replicas
        assert spec["cooldownPeriod"] >= rt.task_timeout_seconds
        assert spec["cooldownPeriod"] == max(rt.scaling.cooldown_seconds, rt.task_timeout_seconds)
        meta = spec["triggers"][0]["metadata"]
        assert meta["queueLength"] == str(rt.scaling.target_backlog_per_pod)
        assert meta["activationQueueLength"] == str(rt.scaling.activation_backlog)


def test_grace_period_covers_task_timeout_plus_drain_and_prestop_waits(rendered: Any) -> None:
    for rt in rendered.config.runtimes:
        deploy = _worker_of(rendered, rt.name)
        pod = deploy["spec"]["template"]["spec"]
        env = _agent_env(rendered, deploy)
        assert pod["terminationGracePeriodSeconds"] >= rt.task_timeout_seconds + int(
            env["SDQ_DRAIN_SECONDS"]
        )
        drain_file = env["SDQ_DRAIN_FILE"]
        pre_stop = " ".join(
            _container(deploy, "runtime")["lifecycle"]["preStop"]["exec"]["command"]
        )
        assert f"[ ! -f {drain_file} ]" in pre_stop
        shared = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for name in ("runtime", "queue-agent"):
            mounts = [m for m in _container(deploy, name)["volumeMounts"] if m["name"] in shared]
            assert any(drain_file.startswith(m["mountPath"] + "/") for m in mounts), name


def test_do_not_disrupt_and_a_matching_pdb(rendered: Any) -> None:
    for deploy in _workers(rendered):
        template = deploy["spec"]["template"]
        assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
        pdb = rendered.one("PodDisruptionBudget", deploy["metadata"]["name"])
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        assert selector == deploy["spec"]["selector"]["matchLabels"]


def test_model_cache_is_mounted_read_only(rendered: Any) -> None:
    for deploy in _workers(rendered):
        pod = deploy["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "hostPath" in v]
        assert volume["hostPath"]["path"] == naming.MODEL_CACHE_HOST_PATH
        mounts = [
            m
            for c in pod["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] == volume["name"]
        ]
        assert mounts
        assert all(m.get("readOnly") is True for m in mounts)


def test_gpu_scheduling_targets_the_runtime_nodepool(rendered: Any) -> None:
    for rt in rendered.config.runtimes:
        pod = _worker_of(rendered, rt.name)["spec"]["template"]["spec"]
        assert pod["nodeSelector"]["karpenter.sh/nodepool"] == naming.gpu_nodepool_name(
            rendered.config, rt
        )
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
        assert runtime["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert "startupProbe" in runtime
        # path and args: test_launch_args.py (generated from sdq_contracts.launch)


def test_agent_runs_locked_down(rendered: Any) -> None:
    for deploy in _workers(rendered):
        agent = _container(deploy, "queue-agent")
        sc = agent["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert agent["readinessProbe"]["httpGet"]["port"] == "agent-http"
        assert {"name": "agent-http", "containerPort": 8081} in agent["ports"]


def test_every_image_is_pinned_and_none_is_latest(rendered: Any) -> None:
    images = [
        c["image"]
        for d in rendered.of_kind("Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert len(images) == 2 * len(rendered.config.runtimes) + 1
    for image in images:
        assert image_is_pinned(image), image
        assert not image.endswith(":latest")
        assert image not in {"sdq-runtime", "sdq-queue-agent"}  # placeholders replaced


def test_cluster_scoped_kinds_have_no_namespace(rendered: Any) -> None:
    for doc in rendered.docs:
        has_ns = "namespace" in doc["metadata"]
        assert has_ns is (doc["kind"] not in CLUSTER_SCOPED), doc["kind"]
        if has_ns:
            assert doc["metadata"]["namespace"] == naming.workload_namespace(rendered.config)


def test_one_nodepool_per_runtime_with_its_knobs(rendered: Any) -> None:
    (nodeclass,) = rendered.of_kind("EC2NodeClass")
    assert len(rendered.of_kind("NodePool")) == len(rendered.config.runtimes)
    for rt in rendered.config.runtimes:
        spec = rendered.one("NodePool", naming.gpu_nodepool_name(rendered.config, rt))["spec"]
        reqs = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
        assert reqs["node.kubernetes.io/instance-type"] == list(rt.instance_types)
        assert reqs["karpenter.sh/capacity-type"] == [c.value for c in rt.capacity_types]
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert spec["disruption"]["consolidateAfter"] not in {"0s", "Never"}
        assert spec["limits"]["nvidia.com/gpu"] == rt.scaling.max_replicas
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in spec[
            "template"
        ]["spec"]["taints"]
        assert spec["template"]["spec"]["nodeClassRef"]["name"] == nodeclass["metadata"]["name"]
        assert spec["template"]["metadata"]["labels"]["sdq/node-role"] == "gpu"


def test_ec2nodeclass_tags_storage_and_user_data(rendered: Any, node_sync_script: str) -> None:
    (nodeclass,) = rendered.of_kind("EC2NodeClass")
    spec = nodeclass["spec"]
    cluster = naming.cluster_name(rendered.config)
    assert spec["tags"] == {
        naming.NODE_TAG_CLUSTER: cluster,
        naming.NODE_TAG_ROLE: naming.NODE_ROLE_GPU,
    }
    assert spec["instanceStorePolicy"] == "RAID0"
    assert spec["instanceProfile"] == rendered.outputs.karpenter_instance_profile
    assert "role" not in spec  # Karpenter v1: `role` or `instanceProfile`, never both
    assert spec["amiSelectorTerms"] == [{"alias": DEFAULT_AMI_ALIAS}]  # pinned, never latest
    for terms in (spec["subnetSelectorTerms"], spec["securityGroupSelectorTerms"]):
        assert terms == [{"tags": {"karpenter.sh/discovery": cluster}}]
    user_data = spec["userData"]
    assert node_sync_script in user_data  # the very same file, byte for byte
    assert f"SDQ_MODEL_BUCKET={rendered.outputs.model_bucket}\n" in user_data
    assert f"SDQ_MODEL_CACHE_DIR={naming.MODEL_CACHE_HOST_PATH}\n" in user_data
    assert naming.MODEL_CACHE_HOST_PATH.startswith("/mnt/k8s-disks/0/")


def test_collector_runs_as_the_account_terraform_binds_to_xray(rendered: Any) -> None:
    ns = naming.workload_namespace(rendered.config)
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in rendered.of_kind("ServiceAccount")
    }
    assert (ns, naming.COLLECTOR_SERVICE_ACCOUNT) in accounts
    collector = rendered.one("Deployment", "otel-collector")
    pod = collector["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == naming.COLLECTOR_SERVICE_ACCOUNT
    assert collector["metadata"]["namespace"] == ns


def test_a_rollout_at_max_replicas_never_needs_a_gpu_over_the_nodepool_limit(
    rendered: Any,
) -> None:
    # NodePool limits.nvidia.com/gpu == max_replicas: a surge pod at max_replicas would stay
    # Pending for ever. Replace in place instead (one drained, its GPU reused).
    for rt in rendered.config.runtimes:
        deploy = _worker_of(rendered, rt.name)
        strategy = deploy["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
        pool = rendered.one("NodePool", naming.gpu_nodepool_name(rendered.config, rt))
        gpus = _container(deploy, "runtime")["resources"]["limits"]["nvidia.com/gpu"]
        surge = strategy["rollingUpdate"]["maxSurge"]
        assert (rt.scaling.max_replicas + surge) * gpus <= pool["spec"]["limits"]["nvidia.com/gpu"]


def test_comfyui_files_are_shared_with_the_agent_that_removes_them(rendered: Any) -> None:
    """ComfyUI has no API that deletes files: its input/output folders (runtime_launch's data
    dir) are emptyDirs the agent also mounts, and the agent is told where they are."""
    comfy = [rt for rt in rendered.config.runtimes if rt.type is RuntimeType.COMFYUI]
    assert comfy
    for rt in comfy:
        deploy = _worker_of(rendered, rt.name)
        args = _container(deploy, "runtime")["args"]
        assert f"--input-directory={COMFYUI_DATA_DIR}/input" in args
        assert f"--output-directory={COMFYUI_DATA_DIR}/output" in args
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        for container in ("runtime", "queue-agent"):
            mounts = {
                m["mountPath"]: m
                for m in _container(deploy, container)["volumeMounts"]
                if "emptyDir" in volumes[m["name"]]
            }
            for sub in ("input", "output"):
                mount = mounts[f"{COMFYUI_DATA_DIR}/{sub}"]  # the agent deletes, so writable
                assert not mount.get("readOnly"), (container, sub)
        assert _agent_env(rendered, deploy)["SDQ_COMFYUI_DATA_DIR"] == COMFYUI_DATA_DIR
