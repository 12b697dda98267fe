"""The runtime images sdq builds (images/<type>/Dockerfile), checked statically (no Docker here):
pinned base and runtime commit, never `latest`, the seed's model directory, mmap off as each
runtime allows it, and the launch arguments of sdq_contracts.launch (checked against the pinned
runtime's parser, like the k8s args)."""

from __future__ import annotations

import json
import re
import shlex
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_launch_args import problems, runtime_sources, versions

from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import runtime_launch
from sdq_k8s.outputs import image_is_pinned
from sdq_k8s.render import K8S_ROOT

pytestmark = pytest.mark.unit

IMAGES = K8S_ROOT.parent / "images"
SEED_MODELS_DIR = "/opt/ml/code/models"
VERSION_KEYS = {RuntimeType.SDWEBUI: "SDWEBUI", RuntimeType.COMFYUI: "COMFYUI"}


def dockerfile(runtime_type: RuntimeType) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (IMAGES / runtime_type.value / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    return [
        (parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in logical.splitlines() if line.strip())
    ]


def instructions(runtime_type: RuntimeType, name: str) -> list[str]:
    return [args for inst, args in dockerfile(runtime_type) if inst == name]


def build_args(runtime_type: RuntimeType) -> dict[str, str]:
    return dict(a.split("=", 1) for a in instructions(runtime_type, "ARG") if "=" in a)


@pytest.mark.parametrize("runtime_type", list(RuntimeType))
def test_base_image_is_pinned_and_nothing_is_latest(runtime_type: RuntimeType) -> None:
    (base,) = instructions(runtime_type, "FROM")
    assert image_is_pinned(base), base
    assert base.startswith("nvidia/cuda:") and "runtime" in base  # CUDA base for torch
    text = (IMAGES / runtime_type.value / "Dockerfile").read_text(encoding="utf-8")
    assert not re.search(r"[:@]latest\b", text)


@pytest.mark.parametrize("runtime_type", list(VERSION_KEYS))
def test_runtime_is_cloned_at_the_pinned_tag_and_commit(runtime_type: RuntimeType) -> None:
    key = VERSION_KEYS[runtime_type]
    pins, args = versions(), build_args(runtime_type)
    assert args[f"{key}_REPO"] == pins[f"{key}_REPO"]
    assert args[f"{key}_VERSION"] == pins[f"{key}_VERSION"]
    assert args[f"{key}_COMMIT"] == pins[f"{key}_COMMIT"]
    runs = " ".join(instructions(runtime_type, "RUN"))
    assert f'--branch "${{{key}_VERSION}}"' in runs
    # The tag alone could move: the build fails unless HEAD is the pinned commit.
    assert f'rev-parse --short={len(pins[f"{key}_COMMIT"])} HEAD)" = "${{{key}_COMMIT}}"' in runs
    assert re.search(r"torch==\d+\.\d+\.\d+", runs)  # torch pinned, not whatever pip picks


@pytest.mark.parametrize("runtime_type", list(RuntimeType))
def test_entry_point_runs_the_launch_arguments(runtime_type: RuntimeType) -> None:
    (entrypoint,) = instructions(runtime_type, "ENTRYPOINT")
    (cmd,) = instructions(runtime_type, "CMD")
    launch = runtime_launch(runtime_type, models_dir=SEED_MODELS_DIR, config_dir="/etc/sdq")
    assert json.loads(cmd) == list(launch.args)
    entry = json.loads(entrypoint)
    # What the entry point itself adds must exist in the runtime too.
    flags = [a for a in entry if a.startswith("--")]
    assert not flags or problems(runtime_type, flags) == []
    assert str(launch.port) in instructions(runtime_type, "EXPOSE")
    assert instructions(runtime_type, "WORKDIR") == ["/opt/ml/code"]
    assert instructions(runtime_type, "WORKDIR")[0] + "/models" == SEED_MODELS_DIR
    (user,) = instructions(runtime_type, "USER")
    assert not user.startswith("0") and user != "root"


def test_invokeai_is_installed_pinned_with_the_launch_environment() -> None:
    """InvokeAI comes from the package registry (no clone): the pinned version, torch pinned, and
    the INVOKEAI_* settings it reads only from its environment set as runtime_launch says."""
    args = build_args(RuntimeType.INVOKEAI)
    assert args["INVOKEAI_VERSION"] == versions()["INVOKEAI_VERSION"]
    runs = " ".join(instructions(RuntimeType.INVOKEAI, "RUN"))
    assert '"invokeai==${INVOKEAI_VERSION}"' in runs
    assert re.search(r"torch==\d+\.\d+\.\d+", runs)
    env = " ".join(instructions(RuntimeType.INVOKEAI, "ENV"))
    for name, value in runtime_launch(RuntimeType.INVOKEAI).env:
        assert f"{name}={value}" in env


def _sdwebui_setting_names() -> set[str]:
    archive = runtime_sources() / "sd-webui-{SDWEBUI_VERSION}-{SDWEBUI_COMMIT}.tar.gz".format(
        **versions()
    )
    with tarfile.open(archive) as tar:
        handle = tar.extractfile("sdwebui/modules/shared_options.py")
        assert handle is not None
        source = handle.read().decode("utf-8")
    return set(re.findall(r'^\s*"(\w+)": OptionInfo\(', source, re.M))


def test_sdwebui_disables_mmap_through_its_setting_not_a_flag() -> None:
    copies = [shlex.split(c) for c in instructions(RuntimeType.SDWEBUI, "COPY")]
    assert ["images/sdwebui/config.json", "/opt/ml/code/config.json"] in copies
    settings: dict[str, Any] = json.loads((IMAGES / "sdwebui" / "config.json").read_text())
    assert settings == {"disable_mmap_load_safetensors": True}
    assert "disable_mmap_load_safetensors" in _sdwebui_setting_names()
    text = (IMAGES / "sdwebui" / "Dockerfile").read_text(encoding="utf-8")
    assert "--disable-mmap-load-safetensors" not in text
    # launch.py --exit (used at build time) is read from sys.argv by prepare_environment.
    assert "--exit" in " ".join(instructions(RuntimeType.SDWEBUI, "RUN"))


def test_comfyui_disables_mmap_and_reads_the_seed_model_directory() -> None:
    assert "--disable-mmap" in runtime_launch(RuntimeType.COMFYUI).args
    copies = [shlex.split(c) for c in instructions(RuntimeType.COMFYUI, "COPY")]
    assert ["images/comfyui/extra_model_paths.yaml", "/etc/sdq/extra_model_paths.yaml"] in copies
    image_paths = yaml.safe_load((IMAGES / "comfyui" / "extra_model_paths.yaml").read_text())
    pod_paths = yaml.safe_load(
        (K8S_ROOT / "components" / "comfyui" / "extra_model_paths.yaml").read_text()
    )
    assert image_paths["sdq"].pop("base_path") == SEED_MODELS_DIR
    pod_paths["sdq"].pop("base_path")
    assert image_paths == pod_paths  # same folder layout as the node cache


def test_every_copy_source_exists(tmp_path: Path) -> None:
    for runtime_type in RuntimeType:
        for copy in instructions(runtime_type, "COPY"):
            source = shlex.split(copy)[0]
            assert (K8S_ROOT.parent / source).is_file(), source
