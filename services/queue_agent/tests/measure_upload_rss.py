"""Peak RSS of the queue agent while it uploads a large ComfyUI video (not a test: run by hand).

    .venv/bin/python services/queue_agent/tests/measure_upload_rss.py [--gib 1] [--part-mib 8]

A moto server (its own process) stands in for AWS, the ComfyUI stand-in of
``comfyui_outputs_server`` (in this process) streams a generated MP4 of the given size from
``/view``, and the real agent runs as its own process (``python -m sdq_queue_agent --burst``).
Its peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read every
20 ms until it exits. A first run with a small image gives the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from agent_stack import make_stack, task  # noqa: E402
from comfyui_outputs_server import running_fake_comfy  # noqa: E402

from sdq_contracts.keys import image_key  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


async def _run_agent(env: dict[str, str]) -> tuple[int, float, int]:
    """(exit code, seconds, peak RSS in KiB) of one burst run of the agent."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdq_queue_agent", "--burst"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _status_kib(proc.pid, "VmHWM"))
        await asyncio.sleep(0.02)
    return proc.returncode, time.monotonic() - started, peak


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--part-mib", type=int, default=8)
    args = parser.parse_args()
    size = int(args.gib * 1024**3)

    port = _free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-west-2",
            }
        )
        stack = make_stack(endpoint)
        async with running_fake_comfy() as comfy:
            env = {"PATH": os.environ.get("PATH", "")} | stack.env(
                "comfyui", comfy.url, upload_part_mib=args.part_mib, log_level="WARNING"
            )
            small = {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64}},
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "s"},
                },
            }
            stack.submit(task("rss-small", runtime="comfyui", tasktype="pipeline", content=small))
            code, seconds, base = await _run_agent(env)
            print(
                f"baseline (one 64x64 PNG): exit {code}, {seconds:.1f} s, peak RSS {base / 1024:.1f} MiB"
            )

            big = {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
                "2": {
                    "class_type": "SaveVideo",
                    "inputs": {"video": ["1", 0], "filename_prefix": "v", "bytes": size},
                },
            }
            stack.submit(task("rss-big", runtime="comfyui", tasktype="pipeline", content=big))
            code, seconds, peak = await _run_agent(env)
        head = stack.client("s3").head_object(
            Bucket=stack.prov.output_bucket, Key=image_key("itest", "rss-big", 1, "mp4")
        )
        files = stack.status("rss-big").files
        print(
            f"{size / 1024**3:.2f} GiB video, {args.part_mib} MiB parts: exit {code}, {seconds:.1f} s, "
            f"peak RSS {peak / 1024:.1f} MiB (+{(peak - base) / 1024:.1f} MiB over the baseline); "
            f"stored {head['ContentLength']} bytes, ETag {head['ETag']}, row files {files}"
        )
    finally:
        moto.terminate()
        moto.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
