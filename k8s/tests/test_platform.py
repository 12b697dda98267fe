"""`make apply` installs the platform in order, `make destroy` drains Karpenter first (issue 12,
blockers 4 and 5): the exact commands, against a fake runner and a fake AWS account."""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sdq_contracts.config import load_config
from sdq_k8s.__main__ import main
from sdq_k8s.outputs import OutputsError, load_cluster_outputs
from sdq_k8s.platform import (
    HELM_VALUES_DIR,
    KARPENTER_VERSION,
    KEDA_VERSION,
    NVIDIA_DEVICE_PLUGIN_VERSION,
    RELEASES,
    Platform,
    PlatformError,
    Result,
    check_compatibility,
    target_for,
)
from sdq_k8s.render import K8S_ROOT

pytestmark = pytest.mark.unit

CONFIG = K8S_ROOT.parent / "config.yaml"
CLUSTER = "sdq-eks"
QUEUE = "sdq-karpenter-interruptions"
OK = Result(0, "", "")


@dataclass
class FakeAccount:
    """Just enough of AWS + the cluster for the platform commands."""

    spot_role: bool = False
    nodeclaims: list[list[str]] = field(default_factory=list)  # one listing per poll
    instances: list[list[str]] = field(default_factory=list)
    karpenter_crds: bool = True
    calls: list[list[str]] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Result:
        argv = list(argv)
        self.calls.append(argv)
        self.envs.append(dict(env))
        if argv[:3] == ["aws", "iam", "get-role"]:
            if self.spot_role:
                return OK
            return Result(254, "", "An error occurred (NoSuchEntity) when calling GetRole")
        if argv[:3] == ["aws", "iam", "create-service-linked-role"]:
            self.spot_role = True
            return OK
        if "get" in argv and "crd" in argv:
            return OK if self.karpenter_crds else Result(1, "", "NotFound")
        if argv[-4:] == ["get", "nodeclaims.karpenter.sh", "-o", "name"]:
            return Result(0, "\n".join(self._next(self.nodeclaims)), "")
        if "describe-instances" in argv:
            return Result(0, "\t".join(self._next(self.instances)) or "None", "")
        return OK

    @staticmethod
    def _next(listings: list[list[str]]) -> list[str]:
        return listings.pop(0) if len(listings) > 1 else (listings[0] if listings else [])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _platform(tmp_path: Path, account: FakeAccount) -> tuple[Platform, list[str], FakeClock]:
    cfg = load_config(CONFIG)
    cluster = load_cluster_outputs(_cluster_outputs(tmp_path))
    lines: list[str] = []
    clock = FakeClock()
    platform = Platform(
        target_for(cfg, cluster, tmp_path / "kube"),
        account,
        lines.append,
        clock=clock,
        sleep=clock.sleep,
    )
    return platform, lines, clock


def _cluster_outputs(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    out.mkdir(exist_ok=True)
    # `terraform output -json` shape plus keys the platform ignores.
    (out / "cluster.json").write_text(
        json.dumps(
            {
                "cluster_name": {"value": CLUSTER, "type": "string", "sensitive": False},
                "karpenter_interruption_queue": QUEUE,
                "cluster_endpoint": "https://example.eks.amazonaws.com",
            }
        )
    )
    return out


def test_install_runs_every_step_in_order_against_this_cluster_only(tmp_path: Path) -> None:
    account = FakeAccount()
    platform, _, _ = _platform(tmp_path, account)
    overlay = tmp_path / "overlay"
    platform.install(overlay)
    kubeconfig = str(tmp_path / "kube" / f"{CLUSTER}.kubeconfig")
    registry = str(tmp_path / "kube" / "helm-registry.json")
    ctx = f"sdq-{CLUSTER}"
    cfg = load_config(CONFIG)
    kube = ["--kubeconfig", kubeconfig, "--kube-context", ctx]
    tail = ["--wait", "--timeout", "10m", "--registry-config", registry, *kube]
    assert account.calls == [
        [
            "aws",
            "--region",
            cfg.region,
            "eks",
            "update-kubeconfig",
            "--name",
            CLUSTER,
            "--kubeconfig",
            kubeconfig,
            "--alias",
            ctx,
        ],
        ["aws", "iam", "get-role", "--role-name", "AWSServiceRoleForEC2Spot"],
        ["aws", "iam", "create-service-linked-role", "--aws-service-name", "spot.amazonaws.com"],
        [
            "helm",
            "upgrade",
            "--install",
            "karpenter-crd",
            "oci://public.ecr.aws/karpenter/karpenter-crd",
            "--version",
            KARPENTER_VERSION,
            "--namespace",
            "kube-system",
            "--create-namespace",
            *tail,
        ],
        [
            "helm",
            "upgrade",
            "--install",
            "karpenter",
            "oci://public.ecr.aws/karpenter/karpenter",
            "--version",
            KARPENTER_VERSION,
            "--namespace",
            "kube-system",
            "--create-namespace",
            "--skip-crds",
            "--set-string",
            f"settings.clusterName={CLUSTER}",
            "--set-string",
            f"settings.interruptionQueue={QUEUE}",
            "--set-string",
            "serviceAccount.name=karpenter",
            "--set-string",
            f"replicas={min(2, cfg.cluster.system_node_count)}",
            "--set-string",
            "controller.resources.requests.cpu=1",
            "--set-string",
            "controller.resources.requests.memory=1Gi",
            "--set-string",
            "controller.resources.limits.cpu=1",
            "--set-string",
            "controller.resources.limits.memory=1Gi",
            *tail,
        ],
        [
            "helm",
            "upgrade",
            "--install",
            "keda",
            "keda",
            "--repo",
            "https://kedacore.github.io/charts",
            "--version",
            KEDA_VERSION,
            "--namespace",
            "keda",
            "--create-namespace",
            "--set-string",
            "serviceAccount.operator.name=keda-operator",
            *tail,
        ],
        [
            "helm",
            "upgrade",
            "--install",
            "nvidia-device-plugin",
            "nvidia-device-plugin",
            "--repo",
            "https://nvidia.github.io/k8s-device-plugin",
            "--version",
            NVIDIA_DEVICE_PLUGIN_VERSION,
            "--namespace",
            "nvidia-device-plugin",
            "--create-namespace",
            "--values",
            str(HELM_VALUES_DIR / "nvidia-device-plugin.values.yaml"),
            *tail,
        ],
        [
            "kubectl",
            "--kubeconfig",
            kubeconfig,
            "--context",
            ctx,
            "apply",
            "--server-side",
            "--field-manager",
            "sdq",
            "-k",
            str(overlay),
        ],
    ]
    # Every call sees only the private kubeconfig, never the ambient one.
    assert all(env == {"KUBECONFIG": kubeconfig} for env in account.envs)
    mode = stat.S_IMODE((tmp_path / "kube" / f"{CLUSTER}.kubeconfig").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "kube").stat().st_mode) == 0o700


def test_install_is_idempotent(tmp_path: Path) -> None:
    account = FakeAccount()
    platform, _, _ = _platform(tmp_path, account)
    platform.install(tmp_path / "overlay")
    first = list(account.calls)
    account.calls.clear()
    platform.install(tmp_path / "overlay")
    # Same converging commands; the spot role exists now, so it is not created again.
    assert account.calls == [c for c in first if "create-service-linked-role" not in c]
    assert sum("create-service-linked-role" in c for c in first) == 1
    for call in account.calls:
        if call[0] == "helm":
            assert call[1:3] == ["upgrade", "--install"]
        if call[0] == "kubectl":
            assert "--server-side" in call


def test_every_release_is_pinned_to_a_version() -> None:
    for release in RELEASES:
        parts = release.version.split(".")
        assert len(parts) == 3 and all(p.isdigit() for p in parts), release
    crd, controller = RELEASES[0], RELEASES[1]
    assert crd.name == "karpenter-crd" and controller.name == "karpenter"  # CRDs first
    assert crd.version == controller.version


def test_device_plugin_schedules_on_karpenter_gpu_nodes_without_nfd() -> None:
    values = yaml.safe_load((HELM_VALUES_DIR / "nvidia-device-plugin.values.yaml").read_text())
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    keys = {e["key"] for term in terms for e in term["matchExpressions"]}
    assert keys == {"karpenter.k8s.aws/instance-gpu-manufacturer"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values[
        "tolerations"
    ]


def test_a_failing_step_stops_the_install_with_its_name(tmp_path: Path) -> None:
    class Failing(FakeAccount):
        def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Result:
            if argv[:4] == ["helm", "upgrade", "--install", "keda"]:
                self.calls.append(list(argv))
                return Result(1, "", "Error: context deadline exceeded")
            return super().__call__(argv, env)

    account = Failing(spot_role=True)
    platform, _, _ = _platform(tmp_path, account)
    with pytest.raises(PlatformError, match=r"helm keda failed.*context deadline exceeded"):
        platform.install(tmp_path / "overlay")
    assert not any(c[0] == "kubectl" for c in account.calls)  # overlay never applied


def test_spot_role_lookup_error_is_not_taken_for_absence(tmp_path: Path) -> None:
    class Denied(FakeAccount):
        def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Result:
            if argv[:3] == ["aws", "iam", "get-role"]:
                return Result(254, "", "An error occurred (AccessDenied)")
            return super().__call__(argv, env)

    platform, _, _ = _platform(tmp_path, Denied())
    with pytest.raises(PlatformError, match="AccessDenied"):
        platform.ensure_spot_role()


def test_unsupported_kubernetes_version_is_refused() -> None:
    check_compatibility("1.33")
    with pytest.raises(
        PlatformError, match=r"karpenter-crd 1\.5\.8 supports Kubernetes 1\.26-1\.33"
    ):
        check_compatibility("1.34")
    with pytest.raises(PlatformError, match="keda"):
        check_compatibility("1.30")


def test_drain_deletes_workloads_then_nodepools_and_waits_for_instances(tmp_path: Path) -> None:
    account = FakeAccount(
        nodeclaims=[["nodeclaim/a", "nodeclaim/b"], ["nodeclaim/b"], []],
        instances=[["i-0a", "i-0b"], ["i-0b"], []],
    )
    platform, lines, clock = _platform(tmp_path, account)
    platform.drain(timeout_seconds=600)
    verbs = [" ".join(c[5:8]) if c[0] == "kubectl" else " ".join(c[3:5]) for c in account.calls]
    assert verbs == [
        "eks update-kubeconfig",
        f"delete namespace {load_config(CONFIG).cluster.namespace}",
        "get crd nodepools.karpenter.sh",
        "delete nodepools.karpenter.sh --all",
        "delete nodeclaims.karpenter.sh --all",
        "get nodeclaims.karpenter.sh -o",
        "get nodeclaims.karpenter.sh -o",
        "get nodeclaims.karpenter.sh -o",
        "ec2 describe-instances",
        "ec2 describe-instances",
        "ec2 describe-instances",
    ]
    describe = account.calls[-1]
    assert f"Name=tag:kubernetes.io/cluster/{CLUSTER},Values=owned" in describe
    assert "Name=tag-key,Values=karpenter.sh/nodepool" in describe
    assert any("waiting for 2 Karpenter instances to go (i-0a, i-0b)" in line for line in lines)
    assert lines[-1] == "drained: no Karpenter instance is left"
    assert clock.now == 1000.0 + 4 * platform.poll_seconds  # 2 waits each, no real sleep


def test_drain_gives_up_at_the_deadline_naming_the_instances(tmp_path: Path) -> None:
    account = FakeAccount(nodeclaims=[[]], instances=[["i-0stuck"]])
    platform, _, clock = _platform(tmp_path, account)
    with pytest.raises(PlatformError, match=r"1 Karpenter instances still there.*i-0stuck"):
        platform.drain(timeout_seconds=60)
    polls = sum("describe-instances" in c for c in account.calls)
    assert polls == 60 / platform.poll_seconds + 1  # bounded
    assert clock.now == 1000.0 + 60


def test_drain_without_karpenter_crds_still_checks_ec2(tmp_path: Path) -> None:
    account = FakeAccount(karpenter_crds=False, instances=[[]])
    platform, _, _ = _platform(tmp_path, account)
    platform.drain(timeout_seconds=60)
    assert not any("nodepools.karpenter.sh" in c and "delete" in c for c in account.calls)
    assert any("describe-instances" in c for c in account.calls)


def test_missing_cluster_outputs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(OutputsError, match="apply the cluster stack first"):
        load_cluster_outputs(tmp_path)


def test_cli_reports_missing_cluster_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(CONFIG), "--outputs", str(tmp_path), "--kube-dir", str(tmp_path)]
    assert main(["platform", "drain", *args]) == 2
    assert "apply the cluster stack first" in capsys.readouterr().err
