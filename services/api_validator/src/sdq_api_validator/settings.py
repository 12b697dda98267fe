"""Settings of the api_validator, read from the environment in this one place."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from sdq_contracts.config import RuntimeConfig

_RUNTIMES = TypeAdapter(tuple[RuntimeConfig, ...])


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    runtimes: tuple[RuntimeConfig, ...]
    input_topic_arn: str
    status_table: str
    output_bucket: str
    max_body_bytes: int = 10 * 1024 * 1024
    claim_check_bytes: int = 200_000
    status_ttl_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [
            k
            for k in (
                "SDQ_RUNTIMES",
                "SDQ_INPUT_TOPIC_ARN",
                "SDQ_STATUS_TABLE",
                "SDQ_OUTPUT_BUCKET",
            )
            if not env.get(k)
        ]
        if missing:
            raise SettingsError(f"missing environment variables: {', '.join(missing)}")
        try:
            runtimes = _RUNTIMES.validate_python(json.loads(env["SDQ_RUNTIMES"]))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise SettingsError(f"SDQ_RUNTIMES is not a JSON list of runtimes: {exc}") from None
        try:
            return cls(
                runtimes=runtimes,
                input_topic_arn=env["SDQ_INPUT_TOPIC_ARN"],
                status_table=env["SDQ_STATUS_TABLE"],
                output_bucket=env["SDQ_OUTPUT_BUCKET"],
                max_body_bytes=int(env.get("SDQ_MAX_BODY_BYTES", cls.max_body_bytes)),
                claim_check_bytes=int(env.get("SDQ_CLAIM_CHECK_BYTES", cls.claim_check_bytes)),
                status_ttl_days=int(env.get("SDQ_STATUS_TTL_DAYS", cls.status_ttl_days)),
            )
        except ValueError as exc:
            raise SettingsError(f"a numeric SDQ_* setting is not an integer: {exc}") from None
