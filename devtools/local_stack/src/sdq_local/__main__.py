"""`python -m sdq_local serve`: start the local stack and keep it up until SIGTERM/Ctrl-C,
describing it in ``<state-dir>/stack.json`` while it is ready (what `sdq local up` starts in the
background; `sdq demo` / `make run` drive it through the HTTP API)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from sdq_contracts import ConfigError, load_config
from sdq_local.processes import ProcessFailed
from sdq_local.stack import LOCAL_CREDENTIALS, LocalStack, StackOptions


def _say(text: str) -> None:
    print(text, flush=True)


def _runtime_urls(pairs: list[str]) -> dict[str, str]:
    urls = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise SystemExit(f"--runtime-url expects NAME=http://host:port, got {pair!r}")
        urls[name] = url
    return urls


STACK_FILE = "stack.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (stack.json holds the API key), atomically:
    the file is created 0600 (never world-readable, not even for a moment) and renamed."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # whatever the umask did
    tmp.replace(path)


async def serve(args: argparse.Namespace) -> int:
    """Run the stack until cancelled; stack.json exists exactly while it is ready."""
    cfg = load_config(args.config)
    state_dir = Path(args.state_dir)
    stack = LocalStack(
        cfg,
        StackOptions(
            state_dir=state_dir,
            runtime_urls=_runtime_urls(args.runtime_url),
            emulator_latency_s=args.latency,
            api_key=args.api_key,
        ),
    )
    described = state_dir / STACK_FILE
    try:
        info = await stack.start()
        description = stack.describe() | {
            "pid": os.getpid(),
            "region": info.region,
            "output_bucket": info.resources.output_bucket,
            "model_bucket": info.resources.model_bucket,
            "results_queue_url": info.results_queue_url,
            "trace_dir": str(stack.trace_dir),
            "node_models_dir": str(info.node_models_dir),
            "runtimes_by_type": {r.name: r.type.value for r in cfg.runtimes},
            "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        write_private(described, json.dumps(description, indent=2))
        _say(f"sdq local stack ready: {info.api_url} (state in {state_dir})")
        await asyncio.Event().wait()  # until cancelled by SIGTERM / Ctrl-C
        return 0
    except ProcessFailed as exc:
        _say(f"!!  {exc}")
        return 1
    finally:
        described.unlink(missing_ok=True)
        await stack.stop()
        _say("sdq local stack stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdq_local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="start the stack and keep it up until SIGTERM")
    serve_p.add_argument("--config", default="config.yaml")
    serve_p.add_argument("--state-dir", default=".local")
    serve_p.add_argument("--latency", type=float, default=0.5, help="emulated generation seconds")
    serve_p.add_argument("--api-key", default=None, help="fixed API key (default: a random one)")
    serve_p.add_argument("--runtime-url", action="append", default=[], metavar="NAME=URL")
    args = parser.parse_args(argv)
    try:
        load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await serve(args)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        return asyncio.run(guarded())
    return 0


if __name__ == "__main__":
    sys.exit(main())
