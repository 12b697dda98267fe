"""`python -m sdq_local run`: the local stack end to end (what `make run` does).

Starts the stack, submits a text-to-image task through the HTTP API with an API key, waits for
its notification, downloads the image to ./outputs/, prints where it is and how long each stage
took, then stops everything (Ctrl-C stops everything too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import aiohttp

from sdq_contracts import ConfigError, load_config
from sdq_local.demo import LocalClient, TaskRun, image_size, load_example
from sdq_local.processes import ProcessFailed
from sdq_local.stack import LocalStack, StackOptions

REPO_ROOT = Path(__file__).resolve().parents[4]


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


async def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    stack = LocalStack(
        cfg,
        StackOptions(
            state_dir=Path(args.state_dir),
            runtime_urls=_runtime_urls(args.runtime_url),
            emulator_latency_s=args.latency,
        ),
    )
    t0 = time.monotonic()
    _say("==> starting the local stack (AWS emulator, runtime emulators, queue agents, API)")
    try:
        info = await stack.start()
        _say(
            f"    ready in {time.monotonic() - t0:.1f}s: API {info.api_url}  (x-api-key: {info.api_key})"
        )
        for name, url in info.runtime_urls.items():
            _say(f"    runtime {name}: {url}")
        body = load_example(REPO_ROOT, "v1alpha2-text-to-image")
        content = body["task"]["content"]
        async with aiohttp.ClientSession() as http:
            client = LocalClient(info, http)
            run_ = await client.submit("/v1alpha2", body)
            _say(
                f"==> submitted text-to-image task {run_.task_id} ({content['width']}x{content['height']})"
            )

            def show(r: TaskRun, state: str) -> None:
                _say(f"    {r.task_id}: {state} (+{time.monotonic() - r.submitted_at:.2f}s)")

            await client.wait_for([run_], within_s=args.timeout, on_status=show)
            note = run_.notification
            assert note is not None
            if note.status.value != "completed":
                _say(f"!!  task {run_.task_id} {note.status.value}: {note.error}")
                return 1
            files = await client.download(run_, Path(args.outputs))
        _say("==> result")
        for path in files:
            width, height = image_size(path)
            _say(f"    {path}  ({width}x{height} PNG, {path.stat().st_size} bytes)")
        _say(f"    output location: {note.output_url}")
        _say("==> timings")
        _say(f"    API accepted the task      {run_.accepted_s * 1000:8.1f} ms")
        for stage, seconds in (note.timings or {}).items():
            _say(f"    {stage:<26} {seconds * 1000:8.1f} ms")
        _say(f"    submit -> notification     {(run_.seconds or 0) * 1000:8.1f} ms")
        expected = (content["width"], content["height"])
        if not files or any(image_size(p) != expected for p in files):
            _say(f"!!  expected {expected[0]}x{expected[1]} images")
            return 1
        return 0
    except (ProcessFailed, TimeoutError, RuntimeError) as exc:
        _say(f"!!  {exc}")
        _say(f"    logs: {stack.log_dir}")
        return 1
    finally:
        _say("==> stopping the local stack")
        await stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdq_local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="the local stack end to end with one task")
    run_p.add_argument("--config", default="config.yaml")
    run_p.add_argument("--outputs", default="outputs")
    run_p.add_argument("--state-dir", default=".local")
    run_p.add_argument("--latency", type=float, default=0.5, help="emulated generation seconds")
    run_p.add_argument("--timeout", type=float, default=120.0)
    run_p.add_argument(
        "--runtime-url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="use a real SD WebUI / ComfyUI for runtime NAME instead of the emulator",
    )
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
        return await run(args)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        return asyncio.run(guarded())
    _say("interrupted; everything stopped")
    return 130


if __name__ == "__main__":
    sys.exit(main())
