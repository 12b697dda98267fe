"""Stack-wide options: where things are built and which AWS the stacks talk to.

Read from the environment in one place (:func:`InfraOptions.from_env`); everything below takes
the frozen result.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sdq_contracts.config import DeploymentConfig
from sdq_infra import names

ENV_CONFIG = "SDQ_CONFIG"
ENV_ENDPOINT = "SDQ_TF_ENDPOINT"
ENV_STATE_BUCKET = "SDQ_STATE_BUCKET"
ENV_BUILD_DIR = "SDQ_BUILD_DIR"


class InfraError(RuntimeError):
    """A problem the user can fix (missing tool, file, setting); printed without a traceback."""


def find_repo_root(start: Path | None = None) -> Path:
    """The sdq checkout that holds libs/contracts and services/ (searched upwards)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "libs" / "contracts" / "pyproject.toml").is_file():
            return candidate
    package_guess = Path(__file__).resolve().parents[3]
    if (package_guess / "libs" / "contracts" / "pyproject.toml").is_file():
        return package_guess
    raise InfraError(f"no sdq checkout (libs/contracts) found above {here}")


@dataclass(frozen=True)
class LambdaArtifact:
    """A Lambda deployment zip; ``sha256`` is None until the zip has been built."""

    path: Path
    sha256: str | None

    @classmethod
    def at(cls, path: Path) -> LambdaArtifact:
        if not path.is_file():
            return cls(path, None)
        digest = hashlib.sha256(path.read_bytes()).digest()
        return cls(path, base64.b64encode(digest).decode())


@dataclass(frozen=True)
class InfraOptions:
    repo_root: Path
    build_dir: Path
    state_bucket: str
    # Set in emulator mode: the provider talks to this endpoint (the moto server) and state is
    # kept in local files; only the AWS-only stacks (routing, model_sync, runtimes) exist.
    emulator_endpoint: str | None = None

    @property
    def emulator(self) -> bool:
        return self.emulator_endpoint is not None

    @property
    def outdir(self) -> Path:
        return self.build_dir / ("cdktf.emulator.out" if self.emulator else "cdktf.out")

    @property
    def lambda_dir(self) -> Path:
        return self.build_dir / "lambda"

    @property
    def local_state_dir(self) -> Path:
        return self.build_dir / ("tfstate-emulator" if self.emulator else "tfstate")

    @property
    def outputs_dir(self) -> Path:
        return self.build_dir / ("outputs-emulator" if self.emulator else "outputs")

    def lambda_artifact(self, service: str) -> LambdaArtifact:
        return LambdaArtifact.at(self.lambda_dir / f"{service}.zip")

    @classmethod
    def from_env(
        cls, cfg: DeploymentConfig, repo_root: Path | None = None, build_dir: Path | None = None
    ) -> InfraOptions:
        root = repo_root or find_repo_root()
        build = build_dir or Path(os.environ.get(ENV_BUILD_DIR) or root / "build")
        endpoint = os.environ.get(ENV_ENDPOINT) or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise InfraError(f"{ENV_ENDPOINT} must be an http(s) URL, got {endpoint!r}")
        bucket = os.environ.get(ENV_STATE_BUCKET) or names.default_state_bucket(cfg)
        return cls(root, build.resolve(), bucket, endpoint)
