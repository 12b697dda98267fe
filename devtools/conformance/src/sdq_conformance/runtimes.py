"""The real runtimes on this machine: build (cached venv), tiny checkpoint, model folders, start,
readiness and stop.

Everything heavy is cached outside the checkout, under ``$SDQ_RUNTIME_CACHE`` (default
``~/.cache/sdq/runtimes``): one venv per runtime version (``scripts/runtimes/build.sh``), the
random-weight checkpoint, the CLIP tokenizer cache. A run only writes its own folder (models
layout, configuration, logs).

A runtime is started with exactly the launch arguments of the Kubernetes components
(:func:`sdq_contracts.launch.runtime_launch`), bound to 127.0.0.1 on a free port, plus the
CPU-only device flags below; nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import runtime_launch
from sdq_runtime_emulator.harness import free_port

HOST = "127.0.0.1"
RUNTIME_SIDE = Path(__file__).resolve().parent / "runtime_side"
# The tiny checkpoint; bump the version when make_checkpoint.py changes what it writes.
CHECKPOINT_NAME = "tiny-sd15-random"
CHECKPOINT_VERSION = "2"
TOKENIZER_ARCHIVE = "hf-clip-vit-large-patch14-tokenizer.tar.gz"

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"[conformance] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RuntimeKind:
    """How one runtime is laid out in its build and started on a CPU."""

    name: str  # build.sh's name
    type: RuntimeType
    tree: str  # folder under <entry>/src
    entry: str  # the runtime's own entry script in that tree
    device_args: tuple[str, ...]  # CPU-only flags the test harness adds
    start_timeout_s: float


COMFYUI = RuntimeKind(
    name="comfyui",
    type=RuntimeType.COMFYUI,
    tree="ComfyUI",
    entry="main.py",
    device_args=("--cpu",),
    start_timeout_s=300.0,
)
SDWEBUI = RuntimeKind(
    name="sdwebui",
    type=RuntimeType.SDWEBUI,
    tree="sdwebui",
    entry="launch.py",
    device_args=(
        "--skip-prepare-environment",  # the venv is built; never pip-install at start
        "--skip-torch-cuda-test",
        "--use-cpu",
        "all",
        "--no-half",
        "--precision",
        "full",
        "--skip-python-version-check",
    ),
    start_timeout_s=300.0,
)
KINDS = {k.name: k for k in (COMFYUI, SDWEBUI)}


def cache_root() -> Path:
    return Path(os.environ.get("SDQ_RUNTIME_CACHE") or Path.home() / ".cache/sdq/runtimes")


def sources_dir() -> Path | None:
    """The directory of pinned archives (``SDQ_RUNTIME_SOURCES``), or None: git clone."""
    value = os.environ.get("SDQ_RUNTIME_SOURCES")
    return Path(value).resolve() if value else None


def build(kind: RuntimeKind, repo_root: Path, log: Log = _stderr) -> Path:
    """The runtime's cache entry, built by scripts/runtimes/build.sh if missing (loud on failure)."""
    script = repo_root / "scripts/runtimes/build.sh"
    log(f"build {kind.name}: {script} (cached)")
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        ["/bin/bash", str(script), kind.name], check=False, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"building {kind.name} failed (build.sh exit {done.returncode})")
    entry = Path(done.stdout.strip().splitlines()[-1])
    if not (entry / ".ready").is_file():
        raise RuntimeError(f"build.sh printed {entry}, which is not a finished build")
    log(f"build {kind.name}: {entry} ({time.monotonic() - started:.0f} s)")
    return entry


def ensure_checkpoint(comfy_entry: Path, log: Log = _stderr) -> Path:
    """The tiny random-weight SD1.5 checkpoint, generated once with the ComfyUI venv."""
    out = cache_root() / "models" / f"{CHECKPOINT_NAME}-v{CHECKPOINT_VERSION}.safetensors"
    if out.is_file():
        return out
    log(f"generating {out} with the ComfyUI venv (~466 MB, once)")
    started = time.monotonic()
    subprocess.run(  # noqa: S603 - our own script in the runtime's venv
        [
            str(comfy_entry / "venv/bin/python"),
            str(RUNTIME_SIDE / "make_checkpoint.py"),
            str(comfy_entry / "src" / COMFYUI.tree),
            str(out),
        ],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log(f"checkpoint ready in {time.monotonic() - started:.0f} s")
    return out


def ensure_tokenizer_cache(log: Log = _stderr) -> Path | None:
    """The CLIP tokenizer as a Hugging Face cache (SD WebUI builds its text encoder from it).

    From the pinned archive when ``SDQ_RUNTIME_SOURCES`` is set; None otherwise (the runtime
    then downloads it from the Hub itself)."""
    sources = sources_dir()
    if sources is None:
        return None
    home = cache_root() / "hf-clip-vit-large-patch14"
    if (home / ".ready").is_file():
        return home / "hf"
    archive = sources / TOKENIZER_ARCHIVE
    log(f"unpacking {archive}")
    home.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(home, filter="data")
    if not (home / "hf").is_dir():
        raise RuntimeError(f"{archive} has no hf/ folder")
    (home / ".ready").touch()
    return home / "hf"


def model_config_yaml(sdwebui_tree: Path) -> str:
    """SD WebUI's v1 inference config with the UNet cut to the tiny checkpoint's one level."""
    config = yaml.safe_load((sdwebui_tree / "configs/v1-inference.yaml").read_text())
    unet = config["model"]["params"]["unet_config"]["params"]
    unet.update(attention_resolutions=[1], num_res_blocks=1, channel_mult=[1], use_checkpoint=False)
    return str(yaml.safe_dump(config, sort_keys=False))


def prepare_models(
    models_dir: Path, checkpoint: Path, sdwebui_tree: Path, names: tuple[str, ...]
) -> None:
    """The node's model cache in SD WebUI's layout: ``Stable-diffusion/<name>.safetensors``
    (links to the one checkpoint) each with its ``<name>.yaml`` beside it."""
    folder = models_dir / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("Lora", "VAE", "embeddings"):
        (models_dir / sub).mkdir(exist_ok=True)
    config = model_config_yaml(sdwebui_tree)
    for name in names:
        link = folder / f"{name}.safetensors"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(checkpoint)
        (folder / f"{name}.yaml").write_text(config)


def write_comfy_model_paths(config_dir: Path, models_dir: Path) -> Path:
    """``extra_model_paths.yaml``: ComfyUI's folders mapped onto the SD WebUI layout."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "extra_model_paths.yaml"
    mapping = {
        "sdq": {
            "base_path": str(models_dir),
            "checkpoints": "Stable-diffusion",
            "configs": "Stable-diffusion",
            "vae": "VAE",
            "loras": "Lora",
            "embeddings": "embeddings",
        }
    }
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


@dataclass
class RealRuntime:
    """One real runtime process (its own process group), started from its cached build."""

    kind: RuntimeKind
    entry: Path
    models_dir: Path
    config_dir: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log: Log = _stderr
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        launch = runtime_launch(
            self.kind.type,
            listen=HOST,
            models_dir=str(self.models_dir),
            config_dir=str(self.config_dir),
            # ComfyUI keeps its input/output folders in its own tree, where the agent (through
            # SDQ_COMFYUI_DATA_DIR) and the suite's leftover-file checks look for them.
            data_dir=str(self.entry / "src" / self.kind.tree),
            port=self.port,
        )
        return [
            str(self.entry / "venv/bin/python"),
            str(RUNTIME_SIDE / "run_runtime.py"),
            str(self.entry / "src" / self.kind.tree),
            self.kind.entry,
            *launch.args,
            *self.kind.device_args,
        ]

    @property
    def health_url(self) -> str:
        path = runtime_launch(self.kind.type, listen=HOST, port=self.port).health_path
        return f"{self.url}{path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.kind.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        self.log(f"start {self.kind.name} on {self.url}: {' '.join(argv[4:])}")
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                argv,
                env={**os.environ, "OMP_NUM_THREADS": "1", **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() kills every child
            )

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Poll the health path until 200; fail at once if the process exits. Returns seconds."""
        within = timeout_s if timeout_s is not None else self.kind.start_timeout_s
        started = time.monotonic()
        deadline = started + within
        last = "no answer yet"
        next_note = started + 30
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.kind.name} exited during start-up; its log:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=5) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        took = time.monotonic() - started
                        self.log(f"{self.kind.name} ready on {self.url} after {took:.0f} s")
                        return took
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = type(exc).__name__
            if time.monotonic() >= next_note:
                self.log(f"waiting for {self.kind.name} ({last}) ...")
                next_note += 30
            time.sleep(0.5)
        raise RuntimeError(
            f"{self.kind.name} not ready after {within:.0f} s ({last}); its log:\n{self.tail()}"
        )

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Children that outlived the leader (the group id stays the leader's pid).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._proc = None

    def kill(self) -> None:
        """Crash it: SIGKILL the whole group at once (the runtime-died-mid-task case)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self._proc = None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Provisioned:
    """What a run needs before any runtime starts."""

    entries: dict[str, Path]
    checkpoint: Path
    tokenizer_home: Path | None


def provision(repo_root: Path, kinds: tuple[RuntimeKind, ...], log: Log = _stderr) -> Provisioned:
    """Build (cached) each runtime, generate the checkpoint once, unpack the tokenizer cache."""
    entries = {k.name: build(k, repo_root, log) for k in kinds}
    comfy = entries.get(COMFYUI.name) or build(COMFYUI, repo_root, log)
    checkpoint = ensure_checkpoint(comfy, log)
    return Provisioned(entries, checkpoint, ensure_tokenizer_cache(log))


def runtime_env(kind: RuntimeKind, tokenizer_home: Path | None) -> dict[str, str]:
    if kind is SDWEBUI and tokenizer_home is not None:
        return {
            "HF_HOME": str(tokenizer_home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    return {}
