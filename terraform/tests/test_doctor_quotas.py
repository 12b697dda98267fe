"""`make doctor` reads the account's G/VT vCPU quotas (on-demand and spot) against what the
configured runtimes need (a fake quota source here)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sdq_contracts.config import load_config, parse_config
from sdq_infra.doctor import (
    QUOTA_ON_DEMAND_G_VT,
    QUOTA_SPOT_G_VT,
    check_gpu_quotas,
    report,
)
from sdq_infra.options import find_repo_root

pytestmark = pytest.mark.unit

REPO = find_repo_root(Path(__file__).parent)
CFG = load_config(REPO / "config.yaml")
VCPUS = {"g5.xlarge": 4, "g6.xlarge": 4, "g5.12xlarge": 48, "vt1.3xlarge": 12, "p4d.24xlarge": 96}


class FakeQuotas:
    def __init__(self, quotas: dict[str, float]) -> None:
        self.quotas = quotas
        self.asked: list[str] = []

    def vcpu_quota(self, quota_code: str) -> float:
        self.asked.append(quota_code)
        if quota_code not in self.quotas:
            raise RuntimeError("AccessDeniedException")
        return self.quotas[quota_code]

    def instance_vcpus(self, instance_type: str) -> int:
        return VCPUS[instance_type]


def test_quota_codes_are_the_g_and_vt_vcpu_quotas() -> None:
    assert (QUOTA_ON_DEMAND_G_VT, QUOTA_SPOT_G_VT) == ("L-DB2E81BA", "L-3819A6DF")


def test_a_fresh_account_with_zero_gpu_quota_is_not_ready() -> None:
    fake = FakeQuotas({QUOTA_ON_DEMAND_G_VT: 0, QUOTA_SPOT_G_VT: 0})
    checks = check_gpu_quotas(CFG, fake)
    assert sorted(fake.asked) == sorted([QUOTA_ON_DEMAND_G_VT, QUOTA_SPOT_G_VT])
    assert [(c.ok, c.required) for c in checks] == [(False, True), (False, True)]
    # config.yaml: two runtimes of 4-vCPU nodes, max_replicas 4 each: 32 vCPUs at full scale.
    assert all("one node needs 4, every runtime at max_replicas 32" in c.detail for c in checks)
    assert "--quota-code L-DB2E81BA --desired-value 32" in checks[0].fix + checks[1].fix
    assert report(checks) == 1


def test_enough_for_one_node_but_not_full_scale_is_a_warning() -> None:
    checks = check_gpu_quotas(CFG, FakeQuotas({QUOTA_ON_DEMAND_G_VT: 8, QUOTA_SPOT_G_VT: 64}))
    by_code = {c.name.split("(")[1].rstrip(")"): c for c in checks}
    assert (by_code[QUOTA_ON_DEMAND_G_VT].ok, by_code[QUOTA_ON_DEMAND_G_VT].required) == (
        False,
        False,
    )
    assert by_code[QUOTA_SPOT_G_VT].ok
    assert report(checks) == 0


def test_only_the_capacity_types_and_gpu_families_configured_are_checked() -> None:
    data = CFG.model_dump(mode="json")
    runtimes = copy.deepcopy(data["runtimes"])
    runtimes[0] |= {"instance_types": ["g5.12xlarge", "vt1.3xlarge"], "capacity_types": ["spot"]}
    runtimes[1] |= {"instance_types": ["p4d.24xlarge"], "capacity_types": ["on-demand"]}
    cfg = parse_config(data | {"runtimes": runtimes})
    fake = FakeQuotas({QUOTA_SPOT_G_VT: 48})
    [check] = check_gpu_quotas(cfg, fake)
    assert fake.asked == [QUOTA_SPOT_G_VT]
    assert "one node needs 48" in check.detail
    assert check.ok is False and check.required is False  # 48 < 4 x 48 at full scale


def test_an_unreadable_quota_is_a_warning_not_a_crash() -> None:
    checks = check_gpu_quotas(CFG, FakeQuotas({}))
    assert all(not c.ok and not c.required and "cannot read" in c.detail for c in checks)
