"""Output of the command-line tools: progress and summaries for humans on stdout/stderr."""

from __future__ import annotations

import sys


def say(message: str = "") -> None:
    sys.stdout.write(f"{message}\n")
    sys.stdout.flush()


def complain(message: str) -> None:
    sys.stderr.write(f"{message}\n")
