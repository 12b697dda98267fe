"""Model sync settings: read from the environment once, in the composition root."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sdq_contracts.naming import MODEL_CACHE_HOST_PATH

DEFAULT_NODE_SCRIPT_PATH = "/opt/sdq/sdq-model-sync.sh"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# AWS-RunShellScript's executionTimeout accepts up to 48 hours.
_MAX_EXECUTION_TIMEOUT = 172_800


class SettingsError(ValueError):
    """Invalid environment; the message names every bad variable."""


@dataclass(frozen=True)
class Settings:
    cluster_name: str
    model_bucket: str
    model_prefix: str = ""
    node_script_path: str = DEFAULT_NODE_SCRIPT_PATH
    model_cache_dir: str = MODEL_CACHE_HOST_PATH
    region: str | None = None
    # How long the script may run on a node (a first sync of many checkpoints is slow).
    execution_timeout_seconds: int = 3600
    # How long SSM keeps trying to deliver the command to a node.
    delivery_timeout_seconds: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        errors: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                errors.append(f"{name}: required")
            return value

        def absolute(name: str, default: str) -> str:
            value = env.get(name, "").strip() or default
            if not value.startswith("/"):
                errors.append(f"{name}: must be an absolute path, got {value!r}")
            return value

        def seconds(name: str, default: int, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                errors.append(f"{name}: whole seconds between {low} and {high}, got {raw!r}")
                return default
            return int(raw)

        cluster = required("SDQ_CLUSTER_NAME")
        bucket = required("SDQ_MODEL_BUCKET")
        if bucket and not _BUCKET.match(bucket):
            errors.append(f"SDQ_MODEL_BUCKET: not a valid S3 bucket name: {bucket!r}")
        settings = cls(
            cluster_name=cluster,
            model_bucket=bucket,
            model_prefix=env.get("SDQ_MODEL_PREFIX", "").strip(),
            node_script_path=absolute("SDQ_NODE_SCRIPT_PATH", DEFAULT_NODE_SCRIPT_PATH),
            model_cache_dir=absolute("SDQ_MODEL_CACHE_DIR", MODEL_CACHE_HOST_PATH),
            region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None,
            execution_timeout_seconds=seconds(
                "SDQ_SYNC_TIMEOUT_SECONDS", 3600, 60, _MAX_EXECUTION_TIMEOUT
            ),
            delivery_timeout_seconds=seconds(
                "SDQ_SYNC_DELIVERY_TIMEOUT_SECONDS", 600, 30, 2_592_000
            ),
        )
        if errors:
            raise SettingsError("invalid model_sync settings: " + "; ".join(errors))
        return settings
