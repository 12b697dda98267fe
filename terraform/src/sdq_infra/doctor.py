"""``make doctor``: what is missing to synthesize, plan, apply and release, and how to fix it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sdq_contracts.config import CapacityType, ConfigError, DeploymentConfig, load_config
from sdq_infra.console import say
from sdq_infra.options import ENV_CONFIG, InfraOptions
from sdq_infra.terraform import (
    ENV_PLUGIN_MIRROR,
    PROVIDER_ADDRESS,
    PROVIDER_VERSION,
    mirror_has_provider,
    plugin_mirror,
)

MIN_TERRAFORM = (1, 10)  # S3 backend lock files (use_lockfile)
PROBE_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str
    required: bool = True


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed tool names
        command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False
    )


def check_terraform() -> Check:
    fix = "install Terraform >= 1.10 (https://developer.hashicorp.com/terraform/install)"
    if shutil.which("terraform") is None:
        return Check("terraform", False, "not on PATH", fix)
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", _run("terraform", "version").stdout)
    if found is None:
        return Check("terraform", False, "version not recognised", fix)
    version = (int(found[1]), int(found[2]))
    return Check("terraform", version >= MIN_TERRAFORM, f"v{found[1]}.{found[2]}.{found[3]}", fix)


def check_provider() -> Check:
    mirror = plugin_mirror()
    ok = mirror_has_provider(mirror)
    return Check(
        f"provider {PROVIDER_ADDRESS} {PROVIDER_VERSION}",
        ok,
        f"in mirror {mirror}" if ok else f"not in mirror {mirror}",
        f"set {ENV_PLUGIN_MIRROR} to a directory holding {PROVIDER_ADDRESS}/{PROVIDER_VERSION} "
        f"(`terraform providers mirror <dir>` on a connected machine builds one)",
    )


def check_node() -> Check:
    path = shutil.which("node")
    detail = _run("node", "--version").stdout.strip() if path else "not on PATH"
    return Check("node (cdktf's jsii runtime)", path is not None, detail, "install Node.js >= 20")


def check_config(path: Path) -> Check:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return Check(
            "deployment config", False, str(exc), f"fix {path} (or point {ENV_CONFIG} at yours)"
        )
    return Check("deployment config", True, f"{path}: stack {cfg.stack_name}, {cfg.region}", "")


def check_aws(options: InfraOptions | None) -> Check:
    if options is not None and options.emulator_endpoint is not None:
        url = f"{options.emulator_endpoint}/moto-api/"
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS):  # noqa: S310
                return Check("AWS (emulator)", True, options.emulator_endpoint, "")
        except OSError as exc:
            return Check("AWS (emulator)", False, f"{url}: {exc}", "start the moto server")
    fix = "configure credentials: `aws configure`, AWS_PROFILE or AWS_ACCESS_KEY_ID/SECRET"
    try:
        import boto3  # noqa: PLC0415 - only doctor needs it
        from botocore.config import Config  # noqa: PLC0415

        config = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 1})
        identity = boto3.client("sts", config=config).get_caller_identity()
    except Exception as exc:
        return Check("AWS credentials", False, f"{type(exc).__name__}: {exc}", fix)
    return Check("AWS credentials", True, f"{identity['Arn']}", fix)


def check_tool(name: str, purpose: str, fix: str) -> Check:
    found = shutil.which(name) is not None
    return Check(name, found, "found" if found else f"not on PATH ({purpose})", fix, required=False)


def check_docker() -> Check:
    fix = "start a Docker engine (only `make release SERVICE=queue_agent` needs it)"
    if shutil.which("docker") is None:
        return Check("docker engine", False, "docker CLI not on PATH", fix, required=False)
    result = _run("docker", "info", "--format", "{{.ServerVersion}}")
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no engine"])[-1]
        return Check("docker engine", False, reason, fix, required=False)
    return Check("docker engine", True, f"server {result.stdout.strip()}", fix, required=False)


# EC2 vCPU quotas of the GPU families sdq launches (Service Quotas, service code "ec2").
QUOTA_ON_DEMAND_G_VT = "L-DB2E81BA"  # Running On-Demand G and VT instances
QUOTA_SPOT_G_VT = "L-3819A6DF"  # All G and VT Spot Instance Requests
GPU_QUOTA_FAMILIES = ("g", "vt")


class QuotaSource(Protocol):
    """The account's EC2 vCPU quotas and instance sizes (boto3 in use, a fake in tests)."""

    def vcpu_quota(self, quota_code: str) -> float: ...

    def instance_vcpus(self, instance_type: str) -> int: ...


def _family(instance_type: str) -> str:
    return re.sub(r"\d.*$", "", instance_type.split(".", 1)[0])


def check_gpu_quotas(cfg: DeploymentConfig, quotas: QuotaSource) -> list[Check]:
    """One check per capacity type the runtimes use: the G/VT vCPU quota must fit at least one
    node of the largest configured type (else no GPU pod ever starts) and should fit every
    runtime at max_replicas (else scaling stops early)."""
    needs: dict[CapacityType, tuple[int, int]] = {}
    for runtime in cfg.runtimes:
        types = [t for t in runtime.instance_types if _family(t) in GPU_QUOTA_FAMILIES]
        if not types:
            continue
        largest = max(quotas.instance_vcpus(t) for t in types)
        for capacity in runtime.capacity_types:
            one, full = needs.get(capacity, (0, 0))
            needs[capacity] = (max(one, largest), full + largest * runtime.scaling.max_replicas)
    codes = {CapacityType.ON_DEMAND: QUOTA_ON_DEMAND_G_VT, CapacityType.SPOT: QUOTA_SPOT_G_VT}
    checks = []
    for capacity, (one, full) in sorted(needs.items()):
        code = codes[capacity]
        name = f"G/VT {capacity.value} vCPU quota ({code})"
        fix = (
            f"request an increase of {code} to at least {full} in Service Quotas "
            f"({cfg.region}): aws service-quotas request-service-quota-increase "
            f"--service-code ec2 --quota-code {code} --desired-value {full}"
        )
        try:
            quota = quotas.vcpu_quota(code)
        except Exception as exc:
            checks.append(Check(name, False, f"cannot read it: {exc}", fix, required=False))
            continue
        detail = f"{quota:g} vCPUs; one node needs {one}, every runtime at max_replicas {full}"
        if quota < one:
            checks.append(Check(name, False, detail + ": no GPU node can start", fix))
        else:
            checks.append(Check(name, quota >= full, detail, fix, required=False))
    return checks


class Boto3Quotas:
    def __init__(self, region: str) -> None:
        import boto3  # noqa: PLC0415 - only doctor needs it
        from botocore.config import Config  # noqa: PLC0415

        config = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 2})
        self._quotas = boto3.client("service-quotas", region_name=region, config=config)
        self._ec2 = boto3.client("ec2", region_name=region, config=config)

    def vcpu_quota(self, quota_code: str) -> float:
        answer = self._quotas.get_service_quota(ServiceCode="ec2", QuotaCode=quota_code)
        return float(answer["Quota"]["Value"])

    def instance_vcpus(self, instance_type: str) -> int:
        answer = self._ec2.describe_instance_types(InstanceTypes=[instance_type])
        return int(answer["InstanceTypes"][0]["VCpuInfo"]["DefaultVCpus"])


def run_checks(
    config_path: Path,
    options: InfraOptions | None,
    repo_root: Path,
    quotas: Callable[[DeploymentConfig], QuotaSource] | None = None,
) -> list[Check]:
    probes: list[Callable[[], Check]] = [
        check_terraform,
        check_provider,
        check_node,
        lambda: check_config(config_path),
        lambda: check_aws(options),
        lambda: check_tool("kubectl", "applying k8s/ overlays", "install kubectl"),
        lambda: check_tool(
            "helm", "installing Karpenter, KEDA and the NVIDIA device plugin", "install helm 3"
        ),
        lambda: check_tool("aws", "kubeconfig and ECR login", "install the AWS CLI v2"),
        check_docker,
        lambda: Check(
            "checkov venv",
            (repo_root / ".venv-checkov" / "bin" / "checkov").is_file(),
            str(repo_root / ".venv-checkov"),
            "make checkov (creates .venv-checkov)",
            required=False,
        ),
    ]
    checks = [probe() for probe in probes]
    aws_ok = next(c.ok for c in checks if c.name.startswith("AWS"))
    if options is not None and options.emulator_endpoint is None and aws_ok:
        cfg = load_config(config_path)
        source = quotas(cfg) if quotas is not None else Boto3Quotas(cfg.region)
        checks.extend(check_gpu_quotas(cfg, source))
    return checks


def report(checks: list[Check]) -> int:
    failed_required = False
    for check in checks:
        mark = "ok " if check.ok else ("ERR" if check.required else "warn")
        say(f"[{mark:>4}] {check.name}: {check.detail}")
        if not check.ok:
            say(f"        fix: {check.fix}")
            failed_required |= check.required
    say("\nready" if not failed_required else "\nnot ready: fix the ERR lines above")
    return 1 if failed_required else 0


def config_path_from_env(default: Path) -> Path:
    return Path(os.environ.get(ENV_CONFIG) or default)
