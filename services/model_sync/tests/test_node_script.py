"""The node sync script end to end against the moto S3, on a temp directory as the "node"."""

from __future__ import annotations

import fcntl
import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from sdq_testing.pytest_plugin import AwsTarget

pytestmark = pytest.mark.integration

BUCKET = "sdq-models-test"
SUMMARY = re.compile(
    r"^sdq-model-sync: added=(\d+) updated=(\d+) removed=(\d+) bytes=(\d+) seconds=(\d+) "
    r"failed=(\d+)$"
)


def summary(stdout: str) -> dict[str, int]:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("sdq-model-sync: added=")]
    match = SUMMARY.match(line)
    assert match, line
    names = ("added", "updated", "removed", "bytes", "seconds", "failed")
    return dict(zip(names, map(int, match.groups()), strict=True))


@pytest.fixture
def s3(aws: AwsTarget) -> Any:
    client = boto3.client("s3")
    client.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region}
    )
    return client


@pytest.fixture
def env(aws: AwsTarget, aws_cli_dir: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{aws_cli_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def node(tmp_path: Path) -> Path:
    return tmp_path / "node" / "sdq-models"


def command(script: Path, node: Path, *extra: str) -> list[str]:
    return [str(script), "--bucket", BUCKET, "--prefix", "models", "--dest", str(node), *extra]


def run(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sdq-sync" not in p.parts
    }


def test_add_change_delete_and_idempotent_rerun(
    s3: Any, env: dict[str, str], node: Path, node_script: Path
) -> None:
    s3.put_object(
        Bucket=BUCKET, Key="models/Stable-diffusion/base model+v1.safetensors", Body=b"ckpt-1"
    )
    s3.put_object(Bucket=BUCKET, Key="models/Lora/style.safetensors", Body=b"lora")
    s3.put_object(Bucket=BUCKET, Key="models/Lora/", Body=b"")  # folder marker
    s3.put_object(Bucket=BUCKET, Key="outputs/not-a-model.png", Body=b"png")

    first = run(command(node_script, node), env)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout) | {"seconds": 0} == {
        "added": 2,
        "updated": 0,
        "removed": 0,
        "bytes": 10,
        "seconds": 0,
        "failed": 0,
    }
    assert files(node) == {
        "Lora/style.safetensors": b"lora",
        "Stable-diffusion/base model+v1.safetensors": b"ckpt-1",
    }
    manifest = (node / ".sdq-sync" / "manifest.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[2] for line in manifest) == [
        "Lora/style.safetensors",
        "Stable-diffusion/base model+v1.safetensors",
    ]
    manifest_mtime = (node / ".sdq-sync" / "manifest.tsv").stat().st_mtime_ns

    again = run(command(node_script, node), env)
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout) | {"seconds": 0} == {
        "added": 0,
        "updated": 0,
        "removed": 0,
        "bytes": 0,
        "seconds": 0,
        "failed": 0,
    }
    # Unchanged syncs leave the manifest alone: its mtime is the runtime's refresh signal.
    assert (node / ".sdq-sync" / "manifest.tsv").stat().st_mtime_ns == manifest_mtime

    s3.put_object(
        Bucket=BUCKET, Key="models/Stable-diffusion/base model+v1.safetensors", Body=b"ckpt-2!"
    )
    s3.delete_object(Bucket=BUCKET, Key="models/Lora/style.safetensors")
    s3.put_object(Bucket=BUCKET, Key="models/ControlNet/deep/cn.pth", Body=b"cn")

    third = run(command(node_script, node), env)
    assert third.returncode == 0, third.stderr
    assert summary(third.stdout) | {"seconds": 0} == {
        "added": 1,
        "updated": 1,
        "removed": 1,
        "bytes": 9,
        "seconds": 0,
        "failed": 0,
    }
    assert files(node) == {
        "ControlNet/deep/cn.pth": b"cn",
        "Stable-diffusion/base model+v1.safetensors": b"ckpt-2!",
    }
    assert not (node / "Lora").exists()  # emptied directories go too
    assert (node / ".sdq-sync" / "manifest.tsv").stat().st_mtime_ns != manifest_mtime


def test_failed_download_never_leaves_a_partial_file_under_the_final_name(
    s3: Any, env: dict[str, str], node: Path, node_script: Path, tmp_path: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/broken-update.safetensors", Body=b"old")
    assert run(command(node_script, node), env).returncode == 0
    s3.put_object(Bucket=BUCKET, Key="models/broken-update.safetensors", Body=b"new version")
    s3.put_object(Bucket=BUCKET, Key="models/broken-new.safetensors", Body=b"brand new")
    s3.put_object(Bucket=BUCKET, Key="models/fine.safetensors", Body=b"fine")

    # An `aws` that dies mid-download (after writing some bytes) for keys named broken-*.
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    real_aws = subprocess.run(
        ["bash", "-c", "command -v aws"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    shim = shim_dir / "aws"
    shim.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ " $* " == *" s3 cp "* && "$*" == *broken-* ]]; then\n'
        '  printf partial > "${@: -1}"; exit 1\n'
        "fi\n"
        f'exec {real_aws} "$@"\n'
    )
    shim.chmod(0o755)
    broken_env = {**env, "PATH": f"{shim_dir}{os.pathsep}{env['PATH']}"}

    failed = run(command(node_script, node), broken_env)
    assert failed.returncode == 1
    assert summary(failed.stdout)["failed"] == 2
    assert summary(failed.stdout)["added"] == 1
    assert files(node) == {
        "broken-update.safetensors": b"old",  # the previous copy stays intact
        "fine.safetensors": b"fine",
    }
    assert list((node / ".sdq-sync" / "tmp").iterdir()) == []

    healed = run(command(node_script, node), env)
    assert healed.returncode == 0, healed.stderr
    assert summary(healed.stdout)["added"] == 1
    assert summary(healed.stdout)["updated"] == 1
    assert files(node)["broken-update.safetensors"] == b"new version"
    assert files(node)["broken-new.safetensors"] == b"brand new"


@pytest.fixture
def held_lock(node: Path) -> Iterator[int]:
    (node / ".sdq-sync").mkdir(parents=True)
    fd = os.open(node / ".sdq-sync" / "lock", os.O_CREAT | os.O_WRONLY, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def test_lock_makes_a_second_sync_wait_or_give_up(
    s3: Any, env: dict[str, str], node: Path, node_script: Path, held_lock: int
) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/a.safetensors", Body=b"a")

    gave_up = run(command(node_script, node, "--lock-timeout", "0"), env)
    assert gave_up.returncode == 75
    assert files(node) == {}

    waiting = subprocess.Popen(
        command(node_script, node, "--lock-timeout", "60"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(waiting.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            line = ""
            while "waiting" not in line and time.monotonic() < deadline:
                if selector.select(timeout=deadline - time.monotonic()):
                    line = waiting.stderr.readline()
        assert "waiting up to 60s" in line
        assert waiting.poll() is None
        assert files(node) == {}
        fcntl.flock(held_lock, fcntl.LOCK_UN)
        stdout, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0
    assert summary(stdout)["added"] == 1
    assert files(node) == {"a.safetensors": b"a"}


def test_concurrent_syncs_are_serialised(
    s3: Any, env: dict[str, str], node: Path, node_script: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/a.safetensors", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="models/b.safetensors", Body=b"bb")
    procs = [
        subprocess.Popen(command(node_script, node), env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    # Without the lock both would see an empty cache and download everything.
    assert sorted(summary(out)["added"] for out in outputs) == [0, 2]
    assert files(node) == {"a.safetensors": b"a", "b.safetensors": b"bb"}


def test_unsafe_keys_are_skipped_and_usage_errors_have_their_own_code(
    s3: Any, env: dict[str, str], node: Path, node_script: Path, tmp_path: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/../escape.safetensors", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="models/.sdq-sync/manifest.tsv", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="models/ok.safetensors", Body=b"ok")
    result = run(command(node_script, node), env)
    assert result.returncode == 1
    assert summary(result.stdout)["failed"] == 2
    assert files(node) == {"ok.safetensors": b"ok"}
    assert not (node.parent / "escape.safetensors").exists()

    no_bucket = run([str(node_script), "--dest", str(node)], {**env, "SDQ_MODEL_BUCKET": ""})
    assert no_bucket.returncode == 64
    assert "no bucket" in no_bucket.stderr
