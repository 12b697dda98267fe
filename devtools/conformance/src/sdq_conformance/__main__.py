"""``python -m sdq_conformance prepare|serve``.

- ``prepare``: build every real runtime (cached), generate the tiny checkpoint once, unpack the
  tokenizer cache. A runtime that cannot be built fails loudly (exit 1).
- ``serve``: prepare, then start the real runtimes on free ports and keep them up until Ctrl-C
  (prints their URLs; export them as SDQ_CONFORMANCE_<NAME>_URL to reuse them across pytest
  runs while developing cases).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from sdq_conformance.fleet import Fleet
from sdq_conformance.runtimes import KINDS, provision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdq_conformance")
    parser.add_argument("command", choices=("prepare", "serve"))
    parser.add_argument("--repo-root", type=Path, default=Path.cwd())
    parser.add_argument("--run-dir", type=Path, default=Path("build/conformance/serve"))
    parser.add_argument("--runtimes", nargs="+", choices=sorted(KINDS), default=sorted(KINDS))
    args = parser.parse_args(argv)
    kinds = tuple(KINDS[name] for name in args.runtimes)
    try:
        provisioned = provision(args.repo_root.resolve(), kinds)
    except Exception as exc:
        print(f"conformance: cannot prepare the real runtimes: {exc}", file=sys.stderr)
        return 1
    if args.command == "prepare":
        return 0
    fleet = Fleet(provisioned, args.run_dir.resolve(), kinds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        fleet.start()
        for name, url in fleet.urls().items():
            print(f"SDQ_CONFORMANCE_{name.upper()}_URL={url}", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
