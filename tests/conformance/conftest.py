"""Fixtures of the conformance suite: the real runtimes (built, started and stopped by the suite
unless SDQ_CONFORMANCE_<NAME>_URL points at running ones), two local stacks with the same
deployment (tests/conformance/config.yaml), one in front of the real runtimes and one in front of
the emulator, and the input picture in every form.

Every test here carries the ``conformance`` marker: `make test` deselects them, `make
conformance` runs only them. At the end the case table (expected, real, emulator) is printed and
written to build/conformance/report.json.
"""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdq_conformance import report
from sdq_conformance.control import RealControl, emulator_files
from sdq_conformance.fleet import Fleet
from sdq_conformance.harness import (
    EmulatorControl,
    Inputs,
    StackThread,
    Target,
    input_png,
)
from sdq_conformance.runtimes import COMFYUI, KINDS, SDWEBUI, provision
from sdq_contracts import load_config
from sdq_contracts.config import RuntimeType
from sdq_local.stack import StackOptions

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_DIR = REPO / "build" / "conformance"
_timings = report.timings
# The case table (cases.py) is imported by the test module by name.
sys.path.insert(0, str(HERE))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.conformance)


@pytest.fixture(scope="session")
def config() -> Any:
    return load_config(HERE / "config.yaml")


@pytest.fixture(scope="session")
def fleet(config: Any) -> Iterator[Fleet | None]:
    """The real runtimes, started once for the session (or None when given by URL)."""
    if all(os.environ.get(f"SDQ_CONFORMANCE_{k.upper()}_URL") for k in KINDS):
        yield None
        return
    started = time.monotonic()
    provisioned = provision(REPO, (COMFYUI, SDWEBUI))
    _timings["provision_s"] = time.monotonic() - started
    run_dir = RUN_DIR / "runtimes"
    shutil.rmtree(run_dir, ignore_errors=True)
    real = Fleet(provisioned, run_dir, (COMFYUI, SDWEBUI))
    started = time.monotonic()
    real.start()
    _timings["runtimes_start_s"] = time.monotonic() - started
    try:
        yield real
    finally:
        real.stop()


def _runtime_urls(fleet: Fleet | None, config: Any) -> dict[str, str]:
    urls = (
        fleet.urls()
        if fleet is not None
        else {k: os.environ[f"SDQ_CONFORMANCE_{k.upper()}_URL"] for k in KINDS}
    )
    kind = {RuntimeType.SDWEBUI: SDWEBUI.name, RuntimeType.COMFYUI: COMFYUI.name}
    return {r.name: urls[kind[r.type]] for r in config.runtimes}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def input_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    """The input picture over HTTP on 127.0.0.1 (the agents' URL allowlist)."""
    root = tmp_path_factory.mktemp("inputs")
    png = input_png()
    (root / "input.png").write_bytes(png)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/input.png", png
    finally:
        server.shutdown()


def _start_stack(
    name: str, config: Any, runtime_urls: dict[str, str], data_dirs: dict[str, str]
) -> StackThread:
    state = RUN_DIR / f"stack-{name}"
    shutil.rmtree(state, ignore_errors=True)
    # The emulator's model cache: the same checkpoint names as the real one (no weights).
    folder = state / "node" / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    (folder / "tiny-sd15-random.safetensors").write_bytes(b"")
    stack = StackThread(
        config,
        StackOptions(
            state_dir=state,
            runtime_urls=runtime_urls,
            runtime_data_dirs=data_dirs,
            emulator_latency_s=0.5,
            # Agents in front of a real SD WebUI load the static model before they are ready.
            start_timeout_s=600.0,
        ),
    )
    started = time.monotonic()
    stack.start(within_s=900)
    _timings[f"stack_{name}_start_s"] = time.monotonic() - started
    return stack


@pytest.fixture(scope="session")
def targets(
    fleet: Fleet | None, config: Any, input_server: tuple[str, bytes]
) -> Iterator[dict[str, Target]]:
    http_url, _ = input_server
    # The agent removes each task's files from the real ComfyUI's folders (its tree here).
    data_dirs = {"comfyui": str(fleet.get(COMFYUI).entry / "src" / COMFYUI.tree)} if fleet else {}
    real_stack = _start_stack("real", config, _runtime_urls(fleet, config), data_dirs)
    emulator_stack: StackThread | None = None
    try:
        emulator_stack = _start_stack("emulator", config, {}, {})
        kinds = {
            r.name: SDWEBUI if r.type is RuntimeType.SDWEBUI else COMFYUI for r in config.runtimes
        }
        real_info = real_stack.local.info
        assert real_info is not None
        control = RealControl(fleet, kinds)
        real = Target("real", real_stack, real_info, control, http_url, control.files)
        emulator_info = emulator_stack.local.info
        assert emulator_info is not None
        emulator = Target(
            "emulator",
            emulator_stack,
            emulator_info,
            EmulatorControl(emulator_stack, emulator_info.runtime_urls),
            http_url,
            lambda runtime: emulator_files(RUN_DIR / "stack-emulator", runtime),
        )
        yield {"real": real, "emulator": emulator}
    finally:
        if emulator_stack is not None:
            emulator_stack.stop()
        real_stack.stop()


@pytest.fixture(scope="session")
def inputs(targets: dict[str, Target], input_server: tuple[str, bytes]) -> dict[str, Inputs]:
    http_url, png = input_server
    return {
        name: Inputs(png=png, s3_uri=t.put_input("inputs/input.png", png), http_url=http_url)
        for name, t in targets.items()
    }


@pytest.fixture(scope="session", autouse=True)
def _suite_clock() -> Iterator[None]:
    started = time.monotonic()
    yield
    _timings["suite_s"] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report.summary(terminalreporter, RUN_DIR / "report.json")
