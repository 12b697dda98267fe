"""Download links end to end on the local stack: `sdq submit --wait` with no AWS credentials
anywhere in its environment fetches every output through the status answer's pre-signed links
(pointing at the moto server on 127.0.0.1), the files on disk are the S3 objects, the
notification's links work too, and no log of the stack holds a link or a signature."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import pytest

from sdq_cli import local
from sdq_cli.errors import Exit
from sdq_cli.main import main
from sdq_contracts.keys import parse_s3_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
# A SigV4 signature (64 hex digits) or a moto/AWS access key id after its parameter name.
LEAK = re.compile(r"X-Amz-(Signature|Credential)(=|%3D)(?!<redacted>)[A-Za-z0-9]", re.I)


@pytest.fixture(scope="module")
def stack(repo_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("links-stack")
    info, started = local.up(state, str(repo_root / "config.yaml"), 0.0, [])
    assert started
    try:
        yield state, info
    finally:
        assert local.down(state)


def _s3(info):
    return boto3.client(
        "s3",
        region_name=info["region"],
        endpoint_url=info["aws_endpoint"],
        aws_access_key_id=info["aws_access_key_id"],
        aws_secret_access_key=info["aws_secret_access_key"],
    )


def _notification(info, task_id: str, timeout: float = 30.0) -> dict:
    sqs = boto3.client(
        "sqs",
        region_name=info["region"],
        endpoint_url=info["aws_endpoint"],
        aws_access_key_id=info["aws_access_key_id"],
        aws_secret_access_key=info["aws_secret_access_key"],
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in sqs.receive_message(
            QueueUrl=info["results_queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            body = json.loads(msg["Body"])
            if body.get("id") == task_id:
                return body
    raise AssertionError(f"no notification for {task_id}")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def _api_only_profile(info, tmp_path: Path, monkeypatch) -> Path:
    """A profile that knows the API only, and an environment with no AWS endpoint and no
    credentials anywhere."""
    profile = tmp_path / "api-only.json"
    profile.write_text(json.dumps({"api_url": info["api_url"], "api_key": info["api_key"]}))
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert boto3.session.Session().get_credentials() is None  # nothing to sign S3 calls with
    return profile


def _stored(info, uris: list[str]) -> dict[str, bytes]:
    s3 = _s3(info)
    stored = {}
    for uri in uris:
        bucket, key = parse_s3_uri(uri)
        stored[key.rsplit("/", 1)[-1]] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return stored


def test_submit_wait_downloads_through_links_without_aws_credentials(
    stack, tmp_path, monkeypatch, capsys
):
    state, info = stack
    profile = _api_only_profile(info, tmp_path, monkeypatch)

    out = tmp_path / "out"
    code = main(
        [
            "submit", "--runtime", "sdruntime", "--prompt", "links", "--batch-size", "2", "--id", "links-1",
            "--wait", "--out", str(out), "--timeout", "120", "--profile", str(profile),
        ]
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == Exit.OK, stderr
    files = [Path(line) for line in stdout.split()]
    assert len(files) == 2 and all(f.parent == out / "links-1" for f in files)

    notification = _notification(info, "links-1")
    by_name = _stored(info, notification["image_url"])
    assert {f.name: f.read_bytes() for f in files} == by_name

    # The notification's own links work without credentials too, and point at moto.
    links = [f["download_url"] for f in notification["files"]]
    assert len(links) == 2
    for link, uri in zip(links, notification["image_url"], strict=True):
        assert link.startswith(info["aws_endpoint"])
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        assert query["X-Amz-Expires"] == ["3600"]  # the config's default downloads.link_seconds
        assert _get(link) == by_name[uri.rsplit("/", 1)[-1]]

    # No log of the stack (API front door, agents, AWS emulator, runtimes), no span of its trace
    # files and nothing the CLI printed holds a link or a signature.
    written = sorted([*state.rglob("*.log"), *state.rglob("*.jsonl")])
    assert {p.parent.name for p in written} == {"logs", "traces"}
    logs = "\n".join(p.read_text(errors="replace") for p in written)
    assert "links-1" in logs  # the task's own lines are there
    for text in (logs, stderr):
        assert not LEAK.search(text), LEAK.search(text)
        signatures = [urllib.parse.parse_qs(urllib.parse.urlsplit(u).query) for u in links]
        for query in signatures:
            assert query["X-Amz-Signature"][0] not in text


def test_submit_wait_downloads_an_animation_workflow_s_outputs_without_aws_credentials(
    stack, repo_root, tmp_path, monkeypatch, capsys
):
    """The animation example (an animated WebP and its four frames from ComfyUI) through the
    CLI with no AWS credentials: every output arrives, byte for byte, the animation as .webp."""
    _, info = stack
    profile = _api_only_profile(info, tmp_path, monkeypatch)
    workflow = repo_root / "tests" / "examples" / "comfyui-animation-api.json"
    out = tmp_path / "out"
    code = main(
        [
            "submit", "--runtime", "comfyui", "--workflow", str(workflow), "--id", "links-anim",
            "--wait", "--out", str(out), "--timeout", "120", "--profile", str(profile),
        ]
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == Exit.OK, stderr
    files = [Path(line) for line in stdout.split()]

    notification = _notification(info, "links-anim")
    kinds = sorted((f["kind"], f["content_type"]) for f in notification["files"])
    assert kinds == [("animation", "image/webp"), *[("image", "image/png")] * 4]
    assert {f.name: f.read_bytes() for f in files} == _stored(info, notification["image_url"])
    assert sorted(f.suffix for f in files) == [".png"] * 4 + [".webp"]
