"""The real InvokeAI for the conformance tests: its cached CPU build (scripts/runtimes/build.sh
invokeai), started on 127.0.0.1 with exactly the launch arguments and environment of the
Kubernetes component (:func:`sdq_contracts.launch.runtime_launch`), a root folder of its own and
a model cache in the node layout; stopped with its whole process group.

Missing build: the tests fail loudly when ``CI`` or ``SDQ_RUNTIME_SOURCES`` is set (the build is
then expected, and build.sh is run), and are skipped otherwise (a developer without the build).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import runtime_launch
from sdq_runtime_emulator.harness import free_port

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[3]
RUNTIME_SIDE = Path(__file__).resolve().parent / "runtime_side"
START_TIMEOUT_S = 240.0


def _versions() -> dict[str, str]:
    pairs = (REPO / "scripts/runtimes/versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in pairs if "=" in line and not line.startswith("#"))


def cache_root() -> Path:
    return Path(os.environ.get("SDQ_RUNTIME_CACHE") or Path.home() / ".cache/sdq/runtimes")


def build_entry() -> Path:
    """The cached build; built (or the tests fail) when CI/SDQ_RUNTIME_SOURCES asks for it."""
    v = _versions()
    entry = cache_root() / f"invokeai-{v['INVOKEAI_VERSION']}-torch{v['TORCH_VERSION']}-py311"
    if (entry / ".ready").is_file():
        return entry
    if not required():
        pytest.skip(
            f"the real InvokeAI is not built ({entry}); run scripts/runtimes/build.sh invokeai"
        )
    done = subprocess.run(
        ["bash", str(REPO / "scripts/runtimes/build.sh"), "invokeai"],
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    built = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else entry
    if done.returncode != 0 or not (built / ".ready").is_file():
        pytest.fail(f"building the real InvokeAI failed (build.sh exit {done.returncode})")
    return built


def tiny_checkpoint() -> Path | None:
    """The random-weight SD1.5 test checkpoint the conformance suite generates into the cache
    (``tiny-sd15-random-v<N>.safetensors``, newest version), if there is one."""
    found = sorted(
        (cache_root() / "models").glob("tiny-sd15-random-v*.safetensors"),
        key=lambda p: int(p.stem.rsplit("-v", 1)[1]) if p.stem.rsplit("-v", 1)[1].isdigit() else 0,
    )
    return found[-1] if found else None


TINY_DIFFUSERS = "tiny-sd15-diffusers"
TINY_DIFFUSERS_VERSION = "1"


def tiny_diffusers_model(entry: Path) -> Path | None:
    """The tiny SD1.5 diffusers pipeline InvokeAI accepts (generated once into the cache with
    InvokeAI's venv from the local CLIP tokenizer cache); None without that tokenizer cache."""
    out = cache_root() / "models" / f"{TINY_DIFFUSERS}-v{TINY_DIFFUSERS_VERSION}"
    if (out / ".ready").is_file():
        return out
    tokenizers = sorted(
        (cache_root() / "hf-clip-vit-large-patch14/hf/hub").glob(
            "models--openai--clip-vit-large-patch14/snapshots/*"
        )
    )
    if not tokenizers:
        return None
    subprocess.run(
        [
            str(entry / "venv/bin/python"),
            str(RUNTIME_SIDE / "make_tiny_diffusers.py"),
            str(out),
            str(tokenizers[-1]),
        ],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        cwd=RUNTIME_SIDE,
    )
    (out / ".ready").touch()
    return out


def required() -> bool:
    """CI (or a machine with the pinned sources) expects the real runtime: missing is an error."""
    return bool(os.environ.get("CI") or os.environ.get("SDQ_RUNTIME_SOURCES"))


@dataclass
class RealInvokeAi:
    entry: Path
    root: Path
    models_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        launch = runtime_launch(
            RuntimeType.INVOKEAI,
            listen=HOST,
            models_dir=str(self.models_dir),
            port=self.port,
            state_dir=str(self.root),
        )
        argv = [
            str(self.entry / "venv/bin/python"),
            str(RUNTIME_SIDE / "run_invokeai.py"),
            *launch.args,
        ]
        # Offline: nothing may come from a hub (the models bring their own tokenizer files).
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **dict(launch.env),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(f"{self.url}{launch.health_path}")

    def _wait_ready(self, health: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"InvokeAI exited during start-up:\n{self.tail()}")
            try:
                with urllib.request.urlopen(health, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise RuntimeError(
            f"InvokeAI not ready after {START_TIMEOUT_S:.0f} s ({last}):\n{self.tail()}"
        )

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._proc = None
