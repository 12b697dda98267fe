"""Image releases: built for linux/amd64, logged in to ECR in the configured region, pushed to
the deployment's repository (Docker and ECR are fakes here)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sdq_infra.options import InfraError, InfraOptions, find_repo_root
from sdq_infra.release import IMAGE_TARGETS, release_image

pytestmark = pytest.mark.unit

REPO = find_repo_root(Path(__file__).parent)
URLS = {
    "queue_agent_repository_url": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/sdq/queue-agent",
    "sdwebui_repository_url": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/sdq/sdwebui",
    "comfyui_repository_url": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/sdq/comfyui",
}


class FakeEcr:
    def get_authorization_token(self) -> dict[str, Any]:
        token = base64.b64encode(b"AWS:secret-password").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


def checkout(tmp_path: Path, service: str) -> InfraOptions:
    """A repository root holding the service's Dockerfile and a registry.json."""
    dockerfile = tmp_path / "repo" / IMAGE_TARGETS[service].dockerfile
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM scratch\n")
    options = InfraOptions(tmp_path / "repo", tmp_path / "build", "state")
    options.outputs_dir.mkdir(parents=True)
    (options.outputs_dir / "registry.json").write_text(json.dumps(URLS))
    return options


@pytest.mark.parametrize("service", ["queue_agent", "sdwebui", "comfyui"])
def test_image_release_builds_amd64_and_pushes_with_the_configured_region(
    tmp_path: Path, service: str
) -> None:
    options = checkout(tmp_path, service)
    calls: list[tuple[tuple[str, ...], str | None]] = []
    regions: list[str] = []

    def docker(*args: str, stdin: str | None = None) -> None:
        calls.append((args, stdin))

    def ecr(region: str) -> FakeEcr:
        regions.append(region)
        return FakeEcr()

    result = release_image(service, "1.2.3", options, "eu-central-1", docker=docker, ecr_client=ecr)
    url = URLS[IMAGE_TARGETS[service].repository_output]
    assert result == f"pushed {url}:1.2.3"
    assert regions == ["eu-central-1"]
    build, login, push = calls
    target = IMAGE_TARGETS[service]
    assert build[0] == (
        "build", "--platform", "linux/amd64",
        "--file", str(options.repo_root / target.dockerfile),
        "--tag", f"{url}:1.2.3", str(options.repo_root / target.context),
    )  # fmt: skip
    assert login == (
        ("login", "--username", "AWS", "--password-stdin", url.split("/")[0]),
        "secret-password",
    )
    assert push == (("push", f"{url}:1.2.3"), None)


def test_runtime_images_come_from_images_dir() -> None:
    assert IMAGE_TARGETS["sdwebui"].dockerfile == "images/sdwebui/Dockerfile"
    assert IMAGE_TARGETS["comfyui"].dockerfile == "images/comfyui/Dockerfile"


@pytest.mark.parametrize("service", sorted(IMAGE_TARGETS))
def test_every_copy_source_exists_in_the_build_context(service: str) -> None:
    """`docker build` fails on a COPY whose source is outside its context (Docker cannot run here,
    so the sources are checked against the context the release step passes)."""
    target = IMAGE_TARGETS[service]
    context = REPO / target.context
    copies = [
        line.split()[1:-1]
        for line in (REPO / target.dockerfile).read_text().splitlines()
        if line.startswith(("COPY ", "ADD ")) and "--from=" not in line
    ]
    for sources in copies:
        for source in (s for s in sources if not s.startswith("--")):
            assert list(context.glob(source)), (
                f"{target.dockerfile}: COPY {source} not in {context}"
            )


def test_missing_dockerfile_is_named(tmp_path: Path) -> None:
    options = InfraOptions(tmp_path, tmp_path / "build", "state")
    with pytest.raises(InfraError, match="images/comfyui/Dockerfile is missing"):
        release_image(
            "comfyui", "1", options, "us-west-2", docker=lambda *a, **k: None, ecr_client=print
        )
