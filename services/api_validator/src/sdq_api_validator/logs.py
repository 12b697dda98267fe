"""structlog JSON to stdout (or another stream); configured once per process."""

from __future__ import annotations

import logging
from typing import TextIO

import structlog

_configured = False


def configure(level: str = "INFO", out: TextIO | None = None, *, force: bool = False) -> None:
    """JSON lines to `out`, or to whatever sys.stdout is when a line is written (loggers are
    not cached, so a swapped stdout is never written to after it is closed)."""
    global _configured  # noqa: PLW0603 - one-time process setup
    if _configured and not force:
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _configured = True
