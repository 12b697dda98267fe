"""`sdq configure`: a profile for a deployment on AWS, from what `make apply` wrote.

The API URL comes from ``build/outputs/routing.json``; the API key's value is not written there
(it is a secret), so it is read from API Gateway by the key id in that file, with the caller's
AWS credentials. The profile file is created readable by its owner only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sdq_cli.errors import CliError, Exit
from sdq_cli.target import USER_PROFILE


def profile_from_outputs(outputs_dir: Path, region: str, apigateway: Any) -> dict[str, Any]:
    path = outputs_dir / "routing.json"
    try:
        routing = json.loads(path.read_text())
    except OSError:
        raise CliError(
            f"{path} not found: run `make apply` first (it writes the stack outputs)", Exit.USAGE
        ) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}", Exit.USAGE) from None
    missing = [k for k in ("api_url", "api_key_id") if not routing.get(k)]
    if missing:
        raise CliError(
            f"{path} has no {', '.join(missing)}: is it the routing stack's?", Exit.USAGE
        )
    try:
        key = apigateway.get_api_key(apiKey=routing["api_key_id"], includeValue=True)["value"]
    except Exception as exc:  # botocore: credentials, permissions, a deleted key
        raise CliError(
            f"cannot read the API key {routing['api_key_id']} from API Gateway: {exc}", Exit.AUTH
        ) from None
    profile = {"api_url": str(routing["api_url"]).rstrip("/"), "api_key": key, "region": region}
    if routing.get("output_bucket"):
        profile["output_bucket"] = routing["output_bucket"]
    return profile


def write_profile(profile: dict[str, Any], path: Path = USER_PROFILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(profile, fh, indent=2)
    path.chmod(0o600)
    return path
