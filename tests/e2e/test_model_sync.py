"""Model sync on the local stack: a checkpoint uploaded to the model bucket reaches the node
cache through the model_sync handler and the node script, and a dynamic-model SD WebUI runtime
can use it at once (the agent refreshes SD WebUI's checkpoint list on a miss: no restart)."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
import yaml

from sdq_cli import local
from sdq_cli.errors import Exit
from sdq_cli.main import main
from sdq_local.stack import LOCAL_CREDENTIALS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack


@pytest.fixture(scope="module")
def flex_stack(repo_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("models")
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    config["runtimes"] = [{"name": "flex", "type": "sdwebui", "dynamic_model": True}]
    path = state / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    info, _ = local.up(state, str(path), 0.1, [])
    try:
        yield state, info
    finally:
        local.down(state)


def test_a_new_checkpoint_is_synced_to_the_node_and_usable_without_restart(flex_stack, capsys):
    state, info = flex_stack
    s3 = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=info["region"],
    ).client("s3", endpoint_url=info["aws_endpoint"])
    key = "Stable-diffusion/sdq-fresh-model.safetensors"
    s3.put_object(Bucket=info["model_bucket"], Key=key, Body=b"not really weights")

    cached = Path(info["node_models_dir"]) / key
    for _ in range(300):  # bounded: 30 s
        if cached.exists():
            break
        time.sleep(0.1)
    assert cached.read_bytes() == b"not really weights"

    profile = str(state / local.STACK_FILE)
    code = main(
        [
            "submit",
            "--prompt",
            "x",
            "--model",
            "sdq-fresh-model.safetensors",
            "--wait",
            "--out",
            str(state / "out"),
            "--timeout",
            "60",
            "--profile",
            profile,
        ]
    )
    out = capsys.readouterr()
    assert code == Exit.OK, out.err

    s3.delete_object(Bucket=info["model_bucket"], Key=key)
    for _ in range(300):
        if not cached.exists():
            break
        time.sleep(0.1)
    assert not cached.exists()
    code = main(
        [
            "submit",
            "--prompt",
            "x",
            "--model",
            "no-such-model.safetensors",
            "--wait",
            "--timeout",
            "60",
            "--profile",
            profile,
        ]
    )
    out = capsys.readouterr()
    assert code == Exit.TASK_FAILED
    assert "no-such-model" in out.err
