"""Which sdq deployment to talk to: flags, then environment, then a profile file.

A profile is a JSON file with ``api_url`` and ``api_key`` (and, for downloads, traces and logs:
``aws_endpoint``, ``region``, credentials, ``trace_dir``, ``log_dir``). `sdq local up` writes
one for the local stack (``.local/stack.json``); `sdq configure` writes one for AWS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdq_cli.errors import CliError, Exit

LOCAL_PROFILE = Path(".local/stack.json")
USER_PROFILE = Path.home() / ".config" / "sdq" / "profile.json"


@dataclass(frozen=True)
class Target:
    api_url: str
    api_key: str | None
    region: str | None = None
    aws_endpoint: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    trace_dir: Path | None = None
    log_dir: Path | None = None
    runtimes: Mapping[str, str] = field(default_factory=dict)  # name → type, when known
    source: str = ""

    def boto_session(self) -> Any:
        import boto3  # noqa: PLC0415 - only commands that touch S3/X-Ray/logs pay for boto3

        return boto3.session.Session(
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        return self.boto_session().client(service, endpoint_url=self.aws_endpoint)


def read_profile(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read profile {path}: {exc.strerror}", Exit.USAGE) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"profile {path} is not JSON: {exc}", Exit.USAGE) from None
    if not isinstance(data, dict):
        raise CliError(f"profile {path} must be a JSON object", Exit.USAGE)
    return data


def resolve(
    endpoint: str | None,
    api_key: str | None,
    profile: str | None,
    env: Mapping[str, str] | None = None,
) -> Target:
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "flags/environment"
    path = (
        Path(profile)
        if profile
        else next((p for p in (LOCAL_PROFILE, USER_PROFILE) if p.is_file()), None)
    )
    if path is not None:
        data = read_profile(path)
        source = str(path)
    url = endpoint or env.get("SDQ_API_URL") or data.get("api_url")
    if not url:
        raise CliError(
            "no sdq endpoint: pass --endpoint URL, set SDQ_API_URL, or start the local stack "
            "with `sdq local up`",
            Exit.USAGE,
        )
    runtimes = data.get("runtimes_by_type") or {}
    return Target(
        api_url=str(url).rstrip("/"),
        api_key=api_key or env.get("SDQ_API_KEY") or data.get("api_key"),
        region=data.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        aws_endpoint=data.get("aws_endpoint") or env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=data.get("aws_access_key_id"),
        aws_secret_access_key=data.get("aws_secret_access_key"),
        trace_dir=Path(data["trace_dir"]) if data.get("trace_dir") else None,
        log_dir=Path(data["logs"]) if data.get("logs") else None,
        runtimes={str(k): str(v) for k, v in runtimes.items()},
        source=source,
    )
