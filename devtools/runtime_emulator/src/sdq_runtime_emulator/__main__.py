"""Command line of the sdq runtime EMULATOR (dev/test only; placeholder images, no models).

    python -m sdq_runtime_emulator --host 127.0.0.1 --port 7860 --generation-latency-s 2

Every knob of :class:`~sdq_runtime_emulator.knobs.Knobs` is a flag. Logs a ready line with
the URL once listening; SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from typing import Any, get_args

from aiohttp import web

from sdq_runtime_emulator import knobs as knobs_module
from sdq_runtime_emulator.app import create_app
from sdq_runtime_emulator.knobs import KnobError, Knobs
from sdq_runtime_emulator.render import BANNER
from sdq_runtime_emulator.state import log

LOG_FORMAT = f"%(asctime)s [{BANNER}] %(levelname)s %(message)s"
SHUTDOWN_TIMEOUT_S = 5.0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m sdq_runtime_emulator",
        description=f"{BANNER}: fake SD WebUI (/sdapi/v1), ComfyUI and InvokeAI (/api) APIs for dev and tests.",
    )
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=7860)
    cli.add_argument(
        "--data-dir",
        default=None,
        help="ComfyUI input/output/temp folders (default: a temporary directory)",
    )
    cli.add_argument("--log-level", default="INFO")
    for field in dataclasses.fields(Knobs):
        kind = str(field.type)
        option: dict[str, Any] = {"default": None, "help": f"knob (default {field.default})"}
        if kind == "float":
            option["type"] = float
        elif kind == "int":
            option["type"] = int
        elif kind != "str | None":
            option["choices"] = get_args(getattr(knobs_module, kind))
        cli.add_argument(f"--{field.name.replace('_', '-')}", **option)
    return cli


async def serve(host: str, port: int, app: web.Application) -> None:
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        log.info(
            "ready on http://%s:%d (SD WebUI /sdapi/v1, ComfyUI /prompt /ws, "
            "knobs /emulator/knobs)",
            host,
            port,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stdout)
    chosen = {field.name: getattr(args, field.name) for field in dataclasses.fields(Knobs)}
    try:
        knobs = Knobs(**{name: value for name, value in chosen.items() if value is not None})
        app = create_app(knobs, data_dir=args.data_dir, allow_process_exit=True)
    except (KnobError, ValueError) as error:
        log.error("invalid option: %s", error)
        return 2
    asyncio.run(serve(args.host, args.port, app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
