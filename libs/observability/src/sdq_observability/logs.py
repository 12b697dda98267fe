"""structlog JSON lines with secrets scrubbed before anything is written; one set-up for every
service.

What never reaches a log line:
- the value of any field whose name says it is a secret (API keys, ``Authorization`` and other
  auth headers, tokens, passwords, signatures, webhook secrets), at any depth;
- the query string of a signed URL (``X-Amz-Signature``, ``X-Amz-Credential``, ``Signature``,
  ``sig``, ``token``), and the values of SigV4 credential parameters wherever else they appear
  (a bare query, a link percent-encoded inside another URL);
- a ``download_url`` field (the pre-signed link of a task output), whatever it holds;
- any secret value the service names at start-up (``secrets=``), wherever it appears in a string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "<redacted>"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Field names whose values are secrets (matched anywhere in the name, any case).
SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authorization|auth[_-]?header|signature|api[_-]?key"
    r"|credential|cookie|download[_-]?url)",
    re.I,
)
# Query strings of presigned/signed URLs carry credentials: the whole query goes.
_SIGNED_QUERY = re.compile(
    r"(https?://[^\s?\"']+)\?[^\s\"']*(X-Amz-[A-Za-z]+|Signature|sig|token)=[^\s\"']*", re.I
)
# The credential parts of a SigV4 query anywhere else (a bare query string, a link percent-encoded
# inside another URL): their values go.
_SIGNED_PARAM = re.compile(
    r"(X-Amz-(?:Signature|Credential|Security-Token))(=|%3D)"
    r"[^\s\"'&%]*(?:%[0-9A-F]{2}[^\s\"'&%]*)*",
    re.I,
)
# Shorter "secrets" would blank out ordinary words.
_MIN_SECRET_LENGTH = 4


def parse_level(level: str) -> int:
    """``"info"``/``"INFO"`` → ``logging.INFO``; a clear ValueError for anything else."""
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    return logging.getLevelNamesMapping()[name]


class Scrubber:
    """structlog processor that removes secrets from every field of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH)

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            value = _SIGNED_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", value)
            return _SIGNED_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", value)
        if isinstance(value, dict):
            return {
                k: REDACTED if SECRET_KEYS.search(str(k)) else self.clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.clean(v) for v in value]
        return value

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = REDACTED if SECRET_KEYS.search(key) else self.clean(event[key])
        return event


def configure_logging(
    level: str = "INFO", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """JSON lines to ``stream``, or to whatever ``sys.stdout`` is when a line is written
    (loggers are not cached, so a swapped stdout is never written to after it is closed).
    Calling it again replaces the previous set-up."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Scrubber(secrets),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(parse_level(level)),
        logger_factory=lambda *_: structlog.PrintLogger(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
