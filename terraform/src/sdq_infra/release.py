"""``make release SERVICE=<name> VERSION=<v>``: a versioned Lambda zip, or the queue agent image
built and pushed to its ECR repository (that one needs a Docker engine)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

from sdq_infra import package
from sdq_infra.options import InfraError, InfraOptions

IMAGE_SERVICES = ("queue_agent",)
SERVICES = (*package.LAMBDA_SERVICES, *IMAGE_SERVICES)
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DOCKER_TIMEOUT_SECONDS = 30


class NoDockerEngine(InfraError):
    """The image cannot be built here: no Docker engine answers."""


def release(service: str, version: str, options: InfraOptions) -> str:
    if service not in SERVICES:
        raise InfraError(f"unknown service {service!r}; releasable: {', '.join(SERVICES)}")
    if not VERSION_PATTERN.match(version):
        raise InfraError(f"VERSION {version!r} is not a valid tag (letters, digits, . _ -)")
    if service in IMAGE_SERVICES:
        return release_image(service, version, options)
    built = package.build(service, options.repo_root, options.lambda_dir)
    destination = options.build_dir / "release" / f"{service}-{version}.zip"
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built.path, destination)
    return f"{destination} sha256={built.sha256_b64} (deploy with `make apply`)"


def require_docker_engine() -> None:
    if shutil.which("docker") is None:
        raise NoDockerEngine(
            "building the queue agent image needs Docker, and no `docker` command is on PATH"
        )
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
            "building the queue agent image needs a running Docker engine, and `docker info` "
            f"failed: {reason}. Run `make release SERVICE=queue_agent` where Docker runs "
            "(the Lambda releases work anywhere)."
        )


def repository_url(options: InfraOptions) -> str:
    outputs = options.outputs_dir / "registry.json"
    try:
        url: str = json.loads(outputs.read_text())["queue_agent_repository_url"]
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


def release_image(service: str, version: str, options: InfraOptions) -> str:
    require_docker_engine()
    dockerfile = options.repo_root / "services" / service / "Dockerfile"
    if not dockerfile.is_file():
        raise InfraError(f"{dockerfile} is missing")
    url = repository_url(options)
    image = f"{url}:{version}"
    _docker("build", "--file", str(dockerfile), "--tag", image, str(options.repo_root))
    import boto3  # noqa: PLC0415 - only image releases talk to ECR from here

    token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    _docker("login", "--username", user, "--password-stdin", url.split("/", 1)[0], stdin=password)
    _docker("push", image)
    return f"pushed {image}"
