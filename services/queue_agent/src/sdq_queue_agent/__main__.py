"""``python -m sdq_queue_agent [--burst]`` (container entry point ``sdq-queue-agent``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sdq_queue_agent.app import run_agent
from sdq_queue_agent.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdq-queue-agent", description=__doc__)
    parser.add_argument(
        "--burst", action="store_true", help="exit once the queue is empty and nothing is in flight"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)  # noqa: T201 - before logging is configured
        return 2
    return asyncio.run(run_agent(settings, burst=args.burst))


if __name__ == "__main__":
    sys.exit(main())
