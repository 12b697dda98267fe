"""``make release SERVICE=<name> VERSION=<v>``: a versioned Lambda zip, or an image (the queue
agent, or a pinned SD WebUI / ComfyUI runtime from images/<runtime>/Dockerfile) built for
linux/amd64 (the GPU nodes' platform) and pushed to its ECR repository (needs a Docker engine)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdq_infra import package
from sdq_infra.options import InfraError, InfraOptions

# Every node sdq launches is x86_64 (g5/g6 GPU nodes, m6i system nodes): an image built on an
# arm64 laptop must still be amd64.
IMAGE_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class ImageTarget:
    # Dockerfile and build context, relative to the repository root.
    dockerfile: str
    context: str
    # Key of the repository's URL in build/outputs/registry.json.
    repository_output: str


IMAGE_TARGETS: dict[str, ImageTarget] = {
    "queue_agent": ImageTarget(
        "services/queue_agent/Dockerfile", ".", "queue_agent_repository_url"
    ),
    "sdwebui": ImageTarget("images/sdwebui/Dockerfile", ".", "sdwebui_repository_url"),
    "comfyui": ImageTarget("images/comfyui/Dockerfile", ".", "comfyui_repository_url"),
}
IMAGE_SERVICES = tuple(sorted(IMAGE_TARGETS))
SERVICES = tuple(sorted((*package.LAMBDA_SERVICES, *IMAGE_SERVICES)))
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DOCKER_TIMEOUT_SECONDS = 30


class NoDockerEngine(InfraError):
    """The image cannot be built here: no Docker engine answers."""


def release(service: str, version: str, options: InfraOptions, region: str) -> str:
    if service not in SERVICES:
        raise InfraError(f"unknown service {service!r}; releasable: {', '.join(SERVICES)}")
    if not VERSION_PATTERN.match(version):
        raise InfraError(f"VERSION {version!r} is not a valid tag (letters, digits, . _ -)")
    if service in IMAGE_SERVICES:
        require_docker_engine()
        return release_image(service, version, options, region)
    built = package.build(service, options.repo_root, options.lambda_dir)
    destination = options.build_dir / "release" / f"{service}-{version}.zip"
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built.path, destination)
    return f"{destination} sha256={built.sha256_b64} (deploy with `make apply`)"


def require_docker_engine() -> None:
    if shutil.which("docker") is None:
        raise NoDockerEngine("building an image needs Docker, and no `docker` command is on PATH")
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=DOCKER_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise NoDockerEngine(
            "building an image needs a running Docker engine, and `docker info` "
            f"failed: {reason}. Run `make release SERVICE=<image>` where Docker runs "
            "(the Lambda releases work anywhere)."
        )


def repository_url(options: InfraOptions, key: str = "queue_agent_repository_url") -> str:
    outputs = options.outputs_dir / "registry.json"
    try:
        url: str = json.loads(outputs.read_text())[key]
    except (OSError, KeyError, ValueError) as exc:
        raise InfraError(
            f"no ECR repository recorded in {outputs}: run `make apply` (registry stack) first"
        ) from exc
    return url


def _docker(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run(  # noqa: S603 - docker with arguments built here
        ["docker", *args],  # noqa: S607
        input=stdin,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InfraError(f"docker {args[0]} failed ({result.returncode})")


def _ecr_client(region: str) -> Any:
    import boto3  # noqa: PLC0415 - only image releases talk to ECR from here

    return boto3.client("ecr", region_name=region)


Docker = Callable[..., None]


def release_image(
    service: str,
    version: str,
    options: InfraOptions,
    region: str,
    *,
    docker: Docker = _docker,
    ecr_client: Callable[[str], Any] = _ecr_client,
) -> str:
    """Build ``service``'s image for linux/amd64, log in to the deployment's ECR (in the
    configured region) and push ``<repository>:<version>``."""
    target = IMAGE_TARGETS[service]
    dockerfile = options.repo_root / target.dockerfile
    if not dockerfile.is_file():
        raise InfraError(f"{dockerfile} is missing")
    url = repository_url(options, target.repository_output)
    image = f"{url}:{version}"
    context: Path = options.repo_root / target.context
    docker(
        "build",
        "--platform",
        IMAGE_PLATFORM,
        "--file",
        str(dockerfile),
        "--tag",
        image,
        str(context),
    )
    token = ecr_client(region).get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    docker("login", "--username", user, "--password-stdin", url.split("/", 1)[0], stdin=password)
    docker("push", image)
    return f"pushed {image}"
