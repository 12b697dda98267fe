"""The harness's own logic, without starting any runtime: launch arguments, model layout,
ComfyUI's model paths, process-group stop."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from sdq_conformance.runtimes import (
    COMFYUI,
    SDWEBUI,
    RealRuntime,
    model_config_yaml,
    prepare_models,
    write_comfy_model_paths,
)
from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import runtime_launch

pytestmark = pytest.mark.unit

V1_INFERENCE = {
    "model": {
        "params": {
            "unet_config": {
                "params": {
                    "attention_resolutions": [4, 2, 1],
                    "num_res_blocks": 2,
                    "channel_mult": [1, 2, 4, 4],
                    "use_checkpoint": True,
                    "context_dim": 768,
                }
            }
        }
    }
}


def _runtime(kind, tmp_path, **kw):  # type: ignore[no-untyped-def]
    return RealRuntime(
        kind=kind,
        entry=tmp_path / "entry",
        models_dir=tmp_path / "models",
        config_dir=tmp_path / "etc",
        log_path=tmp_path / "log.txt",
        port=43210,
        **kw,
    )


@pytest.mark.parametrize("kind", [COMFYUI, SDWEBUI], ids=lambda k: k.name)
def test_a_runtime_starts_with_the_k8s_launch_arguments_plus_cpu_flags_only(kind, tmp_path):
    runtime = _runtime(kind, tmp_path)
    argv = runtime.argv()
    launch = runtime_launch(
        kind.type,
        listen="127.0.0.1",
        models_dir=str(tmp_path / "models"),
        config_dir=str(tmp_path / "etc"),
        data_dir=str(tmp_path / "entry/src" / kind.tree),
        port=43210,
    )
    assert argv[:4] == [
        str(tmp_path / "entry/venv/bin/python"),
        argv[1],
        str(tmp_path / "entry/src" / kind.tree),
        kind.entry,
    ]
    assert argv[1].endswith("runtime_side/run_runtime.py")
    assert argv[4:] == [*launch.args, *kind.device_args]
    assert f"--port={43210}" in launch.args
    assert runtime.health_url == f"http://127.0.0.1:43210{launch.health_path}"


def test_runtime_launch_keeps_the_usual_ports_for_pods():
    assert runtime_launch(RuntimeType.SDWEBUI).port == 7860
    assert "--port=7860" in runtime_launch(RuntimeType.SDWEBUI).args
    assert runtime_launch(RuntimeType.COMFYUI).port == 8188
    assert "--port=8188" in runtime_launch(RuntimeType.COMFYUI).args


def test_the_model_config_is_sd_webui_v1_with_a_one_level_unet(tmp_path):
    tree = tmp_path / "sdwebui"
    (tree / "configs").mkdir(parents=True)
    (tree / "configs/v1-inference.yaml").write_text(yaml.safe_dump(V1_INFERENCE))
    unet = yaml.safe_load(model_config_yaml(tree))["model"]["params"]["unet_config"]["params"]
    assert unet == {
        "attention_resolutions": [1],
        "num_res_blocks": 1,
        "channel_mult": [1],
        "use_checkpoint": False,
        "context_dim": 768,
    }


def test_models_are_laid_out_for_sd_webui_and_mapped_for_comfyui(tmp_path):
    tree = tmp_path / "sdwebui"
    (tree / "configs").mkdir(parents=True)
    (tree / "configs/v1-inference.yaml").write_text(yaml.safe_dump(V1_INFERENCE))
    checkpoint = tmp_path / "cache" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    models = tmp_path / "models"
    prepare_models(models, checkpoint, tree, ("tiny", "v1-5-pruned-emaonly"))
    prepare_models(models, checkpoint, tree, ("tiny", "v1-5-pruned-emaonly"))  # idempotent

    folder = models / "Stable-diffusion"
    assert sorted(p.name for p in folder.iterdir()) == [
        "tiny.safetensors",
        "tiny.yaml",
        "v1-5-pruned-emaonly.safetensors",
        "v1-5-pruned-emaonly.yaml",
    ]
    assert (folder / "tiny.safetensors").read_bytes() == b"weights"
    paths = yaml.safe_load(write_comfy_model_paths(tmp_path / "etc", models).read_text())
    assert paths["sdq"]["base_path"] == str(models)
    assert (Path(paths["sdq"]["base_path"]) / paths["sdq"]["checkpoints"]) == folder


def test_stop_kills_the_whole_process_group(tmp_path):
    runtime = _runtime(COMFYUI, tmp_path)
    fifo = tmp_path / "child.pid"
    os.mkfifo(fifo)
    # A leader that ignores SIGTERM and has a child: both must be gone after stop().
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(fifo)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    runtime.argv = lambda: [sys.executable, "-c", script]  # type: ignore[method-assign]
    runtime.start()
    with fifo.open() as reader:  # blocks until the leader has started its child
        child_pid = int(reader.read())
    runtime.stop(grace_s=0.5)
    assert not runtime.alive()
    # SIGKILL is delivered asynchronously: the orphan dies within moments, not at once.
    deadline = time.monotonic() + 5
    while not _gone(child_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(child_pid)


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
