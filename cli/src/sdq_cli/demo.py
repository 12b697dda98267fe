"""`sdq demo` (what `make run` does): bring the local stack up, submit one task of each kind —
text-to-image, image-to-image with an input image, an upscale, a ComfyUI pipeline — show their
progress, save the images to ./outputs/, print a summary table, bring the stack down."""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from sdq_cli import local
from sdq_cli.api import ApiClient
from sdq_cli.build import TaskFlags, build
from sdq_cli.errors import Exit
from sdq_cli.follow import Progress, Tracked, download, follow
from sdq_cli.target import resolve

WORKFLOW = Path("tests/examples/comfyui-txt2img-api.json")


def _input_image(path: Path) -> Path:
    """A small input picture for the image tasks (made here: nothing is downloaded)."""
    img = Image.new("RGB", (256, 256), (30, 60, 110))
    draw = ImageDraw.Draw(img)
    for i in range(0, 128, 16):
        draw.ellipse((i, i, 255 - i, 255 - i), outline=(240, 200 - i // 2, 80 + i // 2), width=6)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _batch(image: Path) -> list[tuple[str, TaskFlags, tuple[int, int]]]:
    """(label, task, the image size it must produce)."""
    return [
        (
            "text-to-image",
            TaskFlags(prompt="a lighthouse at dawn, oil painting", width=512, height=512, steps=20),
            (512, 512),
        ),
        (
            "image-to-image",
            TaskFlags(
                prompt="the same scene in winter",
                images=(str(image),),
                denoising_strength=0.6,
                width=512,
                height=384,
            ),
            (512, 384),
        ),
        (
            "upscale x2",
            TaskFlags(images=(str(image),), upscale=2.0, upscaler="Lanczos"),
            (512, 512),
        ),
        ("comfyui pipeline", TaskFlags(workflow=str(WORKFLOW)), (512, 512)),
    ]


def _size(path: Path) -> tuple[int, int]:
    with Image.open(io.BytesIO(path.read_bytes())) as img:
        return img.size


def run_demo(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    t0 = time.monotonic()
    print("==> starting the local stack (AWS emulator, runtime emulators, queue agents, API)")
    info, started = local.up(state, args.config, args.latency, [])
    try:
        elapsed = time.monotonic() - t0
        print(f"    ready in {elapsed:.1f}s: {info['api_url']}  (x-api-key {info['api_key']})")
        target = resolve(None, None, str(state / local.STACK_FILE))
        api = ApiClient(target.api_url, target.api_key)
        image = _input_image(state / "demo" / "input.png")
        print("==> submitting a batch")
        tasks: list[tuple[str, Tracked, tuple[int, int]]] = []
        for label, flags, size in _batch(image):
            submission = build(flags, target.runtimes)
            accepted = api.submit(submission.path, submission.body)
            tasks.append((label, Tracked(accepted["id_task"], accepted["runtime"]), size))
            print(f"    {label:<18} {accepted['id_task']}  → {accepted['runtime']}")
        print("==> progress")
        follow(api, [t for _, t, _ in tasks], args.timeout, Progress(sys.stdout))
        out = Path(args.out)
        for _, task, _ in tasks:
            if task.state == "completed":
                download(target, task, out)
        print("==> summary")
        print(
            f"    {'task':<18} {'id':<34} {'runtime':<10} {'status':<10} {'seconds':>7}  "
            f"{'size':<9} files"
        )
        ok = True
        for label, task, size in tasks:
            sizes = {_size(f) for f in task.files}
            shown = ",".join(f"{w}x{h}" for w, h in sorted(sizes)) or "-"
            files = ", ".join(str(f) for f in task.files) or "-"
            print(
                f"    {label:<18} {task.task_id:<34} {task.runtime:<10} {task.state:<10} "
                f"{task.seconds or 0:7.2f}  {shown:<9} {files}"
            )
            ok = ok and task.state == "completed" and sizes == {size}
        verdict = (
            "all tasks completed with images of the requested size"
            if ok
            else "some tasks did not complete as requested"
        )
        print(f"==> {verdict}; images in {out}/")
        return Exit.OK if ok else Exit.TASK_FAILED
    finally:
        if started:
            print("==> stopping the local stack")
            local.down(state)
