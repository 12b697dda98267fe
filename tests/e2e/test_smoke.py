"""`sdq smoke` (`make smoke`) against the local stack: one task per configured runtime through
the API, outputs checked in S3 and deleted, timings reported; a failure names its stage."""

from __future__ import annotations

import json
import re
import urllib.request

import boto3
import pytest

from sdq_cli import local
from sdq_cli.errors import Exit
from sdq_cli.main import main
from sdq_contracts import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack


@pytest.fixture(scope="module")
def stack(repo_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("smoke-stack")
    info, started = local.up(state, str(repo_root / "config.yaml"), 0.2, [])
    assert started
    try:
        yield state, info
    finally:
        assert local.down(state)


def smoke(stack, repo_root, capsys, *extra: str) -> tuple[int, str]:
    state, _ = stack
    code = main(
        [
            "smoke",
            "--profile", str(state / local.STACK_FILE),
            "--config", str(repo_root / "config.yaml"),
            "--workflow", str(repo_root / "tests/examples/comfyui-txt2img-api.json"),
            "--poll", "0.2",
            *extra,
        ]
    )  # fmt: skip
    return code, capsys.readouterr().out


def s3(info):
    return boto3.client(
        "s3",
        endpoint_url=info["aws_endpoint"],
        region_name=info.get("region", "us-west-2"),
        aws_access_key_id=info.get("aws_access_key_id", "testing"),
        aws_secret_access_key=info.get("aws_secret_access_key", "testing"),
    )


def knobs(info, runtime: str, **values) -> None:
    request = urllib.request.Request(
        info["runtimes"][runtime] + "/emulator/knobs",
        data=json.dumps(values).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):  # loopback emulator
        pass


def test_smoke_passes_checks_outputs_reports_timings_and_cleans_up(stack, repo_root, capsys):
    _, info = stack
    cfg = load_config(repo_root / "config.yaml")
    code, out = smoke(stack, repo_root, capsys, "--timeout", "120")
    assert code == Exit.OK, out
    for runtime in cfg.runtimes:
        [line] = [row for row in out.splitlines() if row.strip().startswith(runtime.name + " ")]
        assert " ok " in line
        # queue wait, generation and total are measured (seconds), not "-".
        assert len(re.findall(r"\b\d+\.\ds\b", line)) == 3, line
    assert "smoke passed" in out
    # Everything the smoke tasks wrote is gone.
    listed = s3(info).list_objects_v2(Bucket=cfg.buckets.outputs, Prefix="smoke/")
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


def test_smoke_names_the_failing_stage(stack, repo_root, capsys):
    _, info = stack
    cfg = load_config(repo_root / "config.yaml")
    sdwebui = next(r.name for r in cfg.runtimes if r.type.value == "sdwebui")
    knobs(info, sdwebui, fail_next=10, fail_status=400)
    try:
        code, out = smoke(stack, repo_root, capsys, "--timeout", "120")
    finally:
        knobs(info, sdwebui, fail_next=0)
    assert code == Exit.TASK_FAILED
    assert f"smoke FAILED: runtime {sdwebui}, stage generation: task failed" in out
    assert "smoke passed" not in out


def test_smoke_with_a_wrong_key_fails_at_submit(stack, repo_root, capsys):
    code, out = smoke(stack, repo_root, capsys, "--api-key", "wrong-key", "--timeout", "5")
    assert code == Exit.TASK_FAILED
    assert "stage submit: the API refused the key" in out
