"""The cluster's platform: what `make apply` installs after Terraform, and what `make destroy`
drains before it (``python -m sdq_k8s platform install|drain``).

install, in order, idempotent (every step converges; re-running changes nothing):

1. a kubeconfig for THIS cluster in a private file (``build/kube/<cluster>.kubeconfig``, 0600) with
   an explicit context; every kubectl/helm call names that file and context (and KUBECONFIG
   points at it), so the ambient kubeconfig and its current context are never used;
2. the EC2 Spot service-linked role when the account lacks it (Karpenter's spot launches need it);
3. pinned Helm releases: Karpenter's CRDs, Karpenter, KEDA, the NVIDIA device plugin;
4. the rendered overlay (``kubectl apply --server-side -k``: NodePools, EC2NodeClass, workers,
   the ADOT collector), after the CRDs it uses exist.

drain deletes sdq's workloads (graceful: the agents drain), every NodePool and NodeClaim, then
waits, bounded and logged, until no EC2 instance Karpenter launched for the cluster is left.

Domain only: commands go through a :class:`Runner` port (subprocess in production, a fake in
tests); time through a clock/sleep pair.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig
from sdq_k8s.outputs import ClusterOutputs
from sdq_k8s.render import K8S_ROOT, Knobs, grace_period_seconds

HELM_VALUES_DIR = K8S_ROOT / "platform" / "helm"
SPOT_ROLE_NAME = "AWSServiceRoleForEC2Spot"
SPOT_SERVICE = "spot.amazonaws.com"
HELM_TIMEOUT = "10m"


class PlatformError(RuntimeError):
    """A platform step failed; the message names the step and what to do."""


@dataclass(frozen=True)
class Release:
    """One pinned Helm release. `k8s` is the Kubernetes range the upstream project supports for
    this version (None: no published matrix)."""

    name: str
    chart: str
    version: str
    namespace: str
    repo: str | None = None  # None: `chart` is an oci:// reference
    k8s: tuple[str, str] | None = None
    values_file: str | None = None  # under k8s/platform/helm/
    skip_crds: bool = False


# Versions checked against each project's upstream release tags:
# - Karpenter v1.5.8 (aws/karpenter-provider-aws tag v1.5.8, the last 1.5 patch; the controller
#   policy in terraform/ is Karpenter's v1.5 reference policy). Compatibility matrix
#   (hack/docs/compatibilitymatrix_gen/compatibility.yaml): 1.5.x supports Kubernetes 1.26-1.33.
# - KEDA chart 2.18.3 (kedacore/charts tag v2.18.3, app 2.18.3). keda-docs operate/cluster.md:
#   2.18 is tested on Kubernetes 1.31-1.33. Has ScaledObject fallback.behavior (vendored schema).
# - NVIDIA device plugin 0.17.4 (NVIDIA/k8s-device-plugin tag v0.17.4, chart 0.17.4).
KARPENTER_VERSION = "1.5.8"
KEDA_VERSION = "2.18.3"
NVIDIA_DEVICE_PLUGIN_VERSION = "0.17.4"

KARPENTER_CRD = Release(
    name="karpenter-crd",
    chart="oci://public.ecr.aws/karpenter/karpenter-crd",
    version=KARPENTER_VERSION,
    namespace=naming.KARPENTER_NAMESPACE,
    k8s=("1.26", "1.33"),
)
KARPENTER = Release(
    name="karpenter",
    chart="oci://public.ecr.aws/karpenter/karpenter",
    version=KARPENTER_VERSION,
    namespace=naming.KARPENTER_NAMESPACE,
    k8s=("1.26", "1.33"),
    skip_crds=True,  # owned by the karpenter-crd release (Helm never upgrades crds/)
)
KEDA = Release(
    name="keda",
    chart="keda",
    repo="https://kedacore.github.io/charts",
    version=KEDA_VERSION,
    namespace=naming.KEDA_NAMESPACE,
    k8s=("1.31", "1.33"),
)
NVIDIA_DEVICE_PLUGIN = Release(
    name="nvidia-device-plugin",
    chart="nvidia-device-plugin",
    repo="https://nvidia.github.io/k8s-device-plugin",
    version=NVIDIA_DEVICE_PLUGIN_VERSION,
    namespace="nvidia-device-plugin",
    values_file="nvidia-device-plugin.values.yaml",
)
RELEASES: tuple[Release, ...] = (KARPENTER_CRD, KARPENTER, KEDA, NVIDIA_DEVICE_PLUGIN)


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs one command (no shell) with exactly `env` added to the process environment."""

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Result: ...


class SubprocessRunner:
    """The production runner: output is captured (and shown on failure by the caller)."""

    def __init__(self, timeout_seconds: float = 1800) -> None:
        self._timeout = timeout_seconds

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Result:
        try:
            proc = subprocess.run(  # noqa: S603 - argv from this module, no shell
                list(argv),
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found (see `make doctor`)")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{argv[0]}: no answer after {self._timeout:.0f}s")
        return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class Target:
    """The one cluster every command is aimed at."""

    cluster_name: str
    region: str
    interruption_queue: str
    namespace: str
    kubernetes_version: str
    system_node_count: int
    kube_dir: Path
    max_grace_seconds: int

    @property
    def kubeconfig(self) -> Path:
        return self.kube_dir / f"{self.cluster_name}.kubeconfig"

    @property
    def context(self) -> str:
        return f"sdq-{self.cluster_name}"


def target_for(cfg: DeploymentConfig, cluster: ClusterOutputs, kube_dir: Path) -> Target:
    knobs = Knobs()
    return Target(
        cluster_name=cluster.cluster_name,
        region=cfg.region,
        interruption_queue=cluster.karpenter_interruption_queue,
        namespace=naming.workload_namespace(cfg),
        kubernetes_version=cfg.cluster.kubernetes_version,
        system_node_count=cfg.cluster.system_node_count,
        kube_dir=kube_dir,
        max_grace_seconds=max(grace_period_seconds(rt, knobs) for rt in cfg.runtimes),
    )


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def check_compatibility(kubernetes_version: str) -> None:
    for release in RELEASES:
        if release.k8s is None:
            continue
        low, high = release.k8s
        if not _minor(low) <= _minor(kubernetes_version) <= _minor(high):
            raise PlatformError(
                f"{release.name} {release.version} supports Kubernetes {low}-{high}, but "
                f"cluster.kubernetes_version is {kubernetes_version}: pin a release that supports "
                "it in k8s/src/sdq_k8s/platform.py (and re-vendor k8s/schemas/) or change the version"
            )


def helm_settings(release: Release, t: Target) -> dict[str, str]:
    """The `--set-string` values of a release for this cluster."""
    if release is KARPENTER:
        return {
            "settings.clusterName": t.cluster_name,
            "settings.interruptionQueue": t.interruption_queue,
            # EKS Pod Identity binds the controller role to exactly this account.
            "serviceAccount.name": naming.KARPENTER_SERVICE_ACCOUNT,
            # The chart's replicas need distinct system nodes (required anti-affinity).
            "replicas": str(min(2, t.system_node_count)),
            "controller.resources.requests.cpu": "1",
            "controller.resources.requests.memory": "1Gi",
            "controller.resources.limits.cpu": "1",
            "controller.resources.limits.memory": "1Gi",
        }
    if release is KEDA:
        # EKS Pod Identity binds the KEDA operator role to exactly this account.
        return {"serviceAccount.operator.name": naming.KEDA_SERVICE_ACCOUNT}
    return {}


@dataclass
class Platform:
    target: Target
    run: Runner
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 15.0
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {"KUBECONFIG": str(self.target.kubeconfig)}

    # -- commands ---------------------------------------------------------------------------
    def _run(self, argv: Sequence[str], step: str, *, tolerate: Sequence[str] = ()) -> Result:
        result = self.run(argv, self.env)
        if result.returncode != 0 and not any(t in result.stderr for t in tolerate):
            detail = (result.stderr or result.stdout).strip()
            raise PlatformError(f"{step} failed ({' '.join(argv[:3])} ...): {detail}")
        return result

    def kubectl(self, *args: str) -> list[str]:
        t = self.target
        return ["kubectl", "--kubeconfig", str(t.kubeconfig), "--context", t.context, *args]

    def aws(self, *args: str) -> list[str]:
        return ["aws", "--region", self.target.region, *args]

    def helm_upgrade(self, release: Release, values: Mapping[str, str]) -> list[str]:
        t = self.target
        argv = ["helm", "upgrade", "--install", release.name, release.chart]
        if release.repo is not None:
            argv += ["--repo", release.repo]
        argv += ["--version", release.version, "--namespace", release.namespace]
        argv += ["--create-namespace"]
        if release.skip_crds:
            argv.append("--skip-crds")
        if release.values_file is not None:
            argv += ["--values", str(HELM_VALUES_DIR / release.values_file)]
        for key, value in values.items():
            argv += ["--set-string", f"{key}={value}"]
        argv += ["--wait", "--timeout", HELM_TIMEOUT]
        # Anonymous pulls from public.ecr.aws: a stale login in the user's own registry config
        # makes them fail (403), so helm gets a private, empty one.
        argv += ["--registry-config", str(t.kube_dir / "helm-registry.json")]
        argv += ["--kubeconfig", str(t.kubeconfig), "--kube-context", t.context]
        return argv

    def helm_values(self, release: Release) -> dict[str, str]:
        return helm_settings(release, self.target)

    # -- steps ------------------------------------------------------------------------------
    def write_kubeconfig(self) -> None:
        t = self.target
        t.kube_dir.mkdir(parents=True, exist_ok=True)
        t.kube_dir.chmod(0o700)
        # Created private before the AWS CLI writes credentials-exec config into it.
        fd = os.open(t.kubeconfig, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        t.kubeconfig.chmod(0o600)
        self.say(f"==> kubeconfig {t.kubeconfig} (context {t.context})")
        self._run(
            self.aws(
                "eks",
                "update-kubeconfig",
                "--name",
                t.cluster_name,
                "--kubeconfig",
                str(t.kubeconfig),
                "--alias",
                t.context,
            ),
            "writing the kubeconfig",
        )
        t.kubeconfig.chmod(0o600)

    def ensure_spot_role(self) -> None:
        found = self.run(["aws", "iam", "get-role", "--role-name", SPOT_ROLE_NAME], self.env)
        if found.returncode == 0:
            self.say(f"==> {SPOT_ROLE_NAME}: present")
            return
        if "NoSuchEntity" not in found.stderr:
            raise PlatformError(f"cannot read the role {SPOT_ROLE_NAME}: {found.stderr.strip()}")
        self.say(f"==> {SPOT_ROLE_NAME}: creating (EC2 Spot launches need it)")
        self._run(
            ["aws", "iam", "create-service-linked-role", "--aws-service-name", SPOT_SERVICE],
            f"creating {SPOT_ROLE_NAME}",
            tolerate=("has been taken in this account",),  # created meanwhile: fine
        )

    def install(self, overlay: Path) -> None:
        check_compatibility(self.target.kubernetes_version)
        self.write_kubeconfig()
        self.ensure_spot_role()
        for release in RELEASES:
            self.say(f"==> helm {release.name} {release.version} ({release.namespace})")
            self._run(self.helm_upgrade(release, self.helm_values(release)), f"helm {release.name}")
        self.say(f"==> overlay {overlay}")
        self._run(
            self.kubectl("apply", "--server-side", "--field-manager", "sdq", "-k", str(overlay)),
            "applying the overlay",
        )
        self.say("platform installed")

    def drain(self, timeout_seconds: float) -> None:
        """Remove what makes Karpenter keep instances, then wait until none is left."""
        t = self.target
        self.write_kubeconfig()
        self.say(f"==> deleting namespace {t.namespace} (workers drain their tasks)")
        self._run(
            self.kubectl(
                "delete",
                "namespace",
                t.namespace,
                "--ignore-not-found",
                "--wait=true",
                f"--timeout={t.max_grace_seconds + 120}s",
            ),
            f"deleting namespace {t.namespace}",
        )
        crds = self.run(
            self.kubectl("get", "crd", "nodepools.karpenter.sh", "nodeclaims.karpenter.sh"),
            self.env,
        )
        if crds.returncode == 0:
            for kind in ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh"):
                self.say(f"==> deleting every {kind}")
                self._run(
                    self.kubectl("delete", kind, "--all", "--ignore-not-found", "--wait=false"),
                    f"deleting {kind}",
                )
            deadline = self.clock() + timeout_seconds
            self._wait_until_empty(
                "NodeClaims",
                self.nodeclaims,
                deadline,
                "kubectl get nodeclaims; Karpenter's logs: kubectl -n kube-system logs "
                "deploy/karpenter",
            )
        else:
            self.say("    no Karpenter CRDs in the cluster: nothing to delete there")
        deadline = self.clock() + timeout_seconds
        self._wait_until_empty(
            "Karpenter instances",
            self.karpenter_instances,
            deadline,
            f"terminate them yourself (aws --region {t.region} ec2 terminate-instances "
            "--instance-ids ...) and run `make destroy` again",
        )
        self.say("drained: no Karpenter instance is left")

    def nodeclaims(self) -> list[str]:
        listing = self._run(
            self.kubectl("get", "nodeclaims.karpenter.sh", "-o", "name"), "listing NodeClaims"
        )
        return listing.stdout.split()

    def karpenter_instances(self) -> list[str]:
        t = self.target
        result = self._run(
            self.aws(
                "ec2",
                "describe-instances",
                "--filters",
                f"Name=tag:kubernetes.io/cluster/{t.cluster_name},Values=owned",
                "Name=tag-key,Values=karpenter.sh/nodepool",
                "Name=instance-state-name,Values=pending,running,stopping,stopped,shutting-down",
                "--query",
                "Reservations[].Instances[].InstanceId",
                "--output",
                "text",
            ),
            "listing Karpenter's instances",
        )
        return [i for i in result.stdout.split() if i != "None"]

    def _wait_until_empty(
        self, what: str, remaining: Callable[[], list[str]], deadline: float, hint: str
    ) -> None:
        while True:
            left = remaining()
            if not left:
                self.say(f"    no {what} left")
                return
            now = self.clock()
            if now >= deadline:
                raise PlatformError(
                    f"{len(left)} {what} still there at the deadline: {', '.join(left)}; {hint}"
                )
            self.say(
                f"    waiting for {len(left)} {what} to go ({', '.join(left[:5])}"
                f"{', ...' if len(left) > 5 else ''}); {deadline - now:.0f}s left"
            )
            self.sleep(self.poll_seconds)
