"""SD WebUI crashed at start (issue 12, blocker 3): the component passed
`--disable-mmap-load-safetensors`, a flag v1.10.1 does not have. The runtime container's args are
now generated from sdq_contracts.launch.runtime_launch, and every flag is checked against the
argument parser source of the pinned runtimes ($SDQ_RUNTIME_SOURCES, default ../shared/runtimes:
the archives scripts/runtimes builds from). The archives missing is a failure, never a skip.
"""

from __future__ import annotations

import ast
import os
import tarfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdq_contracts.config import RuntimeType
from sdq_contracts.launch import runtime_launch
from sdq_k8s.render import K8S_ROOT, MODELS_MOUNT, RUNTIME_CONFIG_DIR

pytestmark = pytest.mark.unit

REPO_ROOT = K8S_ROOT.parent
VERSIONS_ENV = REPO_ROOT / "scripts" / "runtimes" / "versions.env"
# Files holding each runtime's argparse definitions, inside its pinned archive.
PARSER_FILES = {
    RuntimeType.SDWEBUI: (
        "sd-webui-{SDWEBUI_VERSION}-{SDWEBUI_COMMIT}.tar.gz",
        ("sdwebui/modules/cmd_args.py", "sdwebui/extensions-builtin/Lora/preload.py"),
    ),
    RuntimeType.COMFYUI: (
        "comfyui-{COMFYUI_VERSION}-{COMFYUI_COMMIT}.tar.gz",
        ("ComfyUI/comfy/cli_args.py",),
    ),
}
NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "count", "help", "version"}


def versions() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in VERSIONS_ENV.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def runtime_sources() -> Path:
    configured = os.environ.get("SDQ_RUNTIME_SOURCES")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "runtimes"
    if not path.is_dir():
        pytest.fail(
            f"pinned runtime sources not found at {path}: set SDQ_RUNTIME_SOURCES to the directory "
            "of the runtime archives (scripts/runtimes/versions.env names them)"
        )
    return path


@cache
def parser_options(runtime_type: RuntimeType) -> dict[str, bool | None]:
    """Every option string the runtime's argparse defines -> takes a value (True), takes none
    (False) or takes an optional one (None: nargs='?')."""
    archive_pattern, members = PARSER_FILES[runtime_type]
    archive = runtime_sources() / archive_pattern.format(**versions())
    if not archive.is_file():
        pytest.fail(f"pinned runtime archive {archive} is missing")
    options: dict[str, bool | None] = {}
    with tarfile.open(archive) as tar:
        for member in members:
            handle = tar.extractfile(member)
            assert handle is not None, f"{member} not in {archive.name}"
            options.update(_add_argument_calls(ast.parse(handle.read().decode("utf-8"))))
    assert len(options) > 10, f"parsed too few options from {archive.name}: {options}"
    return options


def _add_argument_calls(tree: ast.AST) -> Iterable[tuple[str, bool | None]]:
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        keywords = {
            k.arg: k.value.value
            for k in node.keywords
            if k.arg and isinstance(k.value, ast.Constant)
        }
        takes: bool | None = True
        if keywords.get("action") in NO_VALUE_ACTIONS:
            takes = False
        elif keywords.get("nargs") == "?":
            takes = None
        for arg in node.args:
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("-"):
                yield str(arg.value), takes


def problems(runtime_type: RuntimeType, args: Iterable[str]) -> list[str]:
    options = parser_options(runtime_type)
    found = []
    for arg in args:
        flag, eq, _ = arg.partition("=")
        if flag not in options:
            found.append(f"{arg}: no such option in the pinned {runtime_type.value}")
        elif eq and options[flag] is False:
            found.append(f"{arg}: {flag} takes no value")
        elif not eq and options[flag] is True:
            found.append(f"{arg}: {flag} needs a value")
    return found


@pytest.mark.parametrize("runtime_type", list(PARSER_FILES))
@pytest.mark.parametrize("listen", ["0.0.0.0", "127.0.0.1"])
def test_every_launch_flag_exists_in_the_pinned_runtime(
    runtime_type: RuntimeType, listen: str
) -> None:
    launch = runtime_launch(runtime_type, listen=listen)
    assert launch.args
    assert problems(runtime_type, launch.args) == []


def test_the_check_catches_the_flag_that_crashed_sd_webui() -> None:
    assert problems(RuntimeType.SDWEBUI, ["--disable-mmap-load-safetensors"]) == [
        "--disable-mmap-load-safetensors: no such option in the pinned sdwebui"
    ]
    assert problems(RuntimeType.COMFYUI, ["--disable-mmap=yes", "--port"]) == [
        "--disable-mmap=yes: --disable-mmap takes no value",
        "--port: --port needs a value",
    ]


def _workers(rendered: Any) -> list[dict[str, Any]]:
    return [d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] != "otel-collector"]


def test_runtime_container_runs_exactly_runtime_launch(rendered: Any) -> None:
    for rt in rendered.config.runtimes:
        pod = rendered.one("Deployment", f"{rt.name}-runtime")["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "runtime")
        launch = runtime_launch(rt.type, models_dir=MODELS_MOUNT, config_dir=RUNTIME_CONFIG_DIR)
        assert problems(rt.type, container["args"]) == []  # against the real parser
        assert container["args"] == list(launch.args)
        assert container["ports"] == [{"name": "http", "containerPort": launch.port}]
        assert container["startupProbe"]["httpGet"]["path"] == launch.health_path
        env_cm = next(c for c in pod["containers"] if c["name"] == "queue-agent")
        cm = rendered.one("ConfigMap", env_cm["envFrom"][0]["configMapRef"]["name"])
        assert cm["data"]["SDQ_RUNTIME_URL"] == f"http://127.0.0.1:{launch.port}"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert MODELS_MOUNT in mounts
        if rt.type is RuntimeType.COMFYUI:
            # --extra-model-paths-config=<config_dir>/extra_model_paths.yaml is really mounted.
            (mount,) = [
                m for m in container["volumeMounts"] if m["mountPath"] == RUNTIME_CONFIG_DIR
            ]
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            paths = rendered.one("ConfigMap", volume["configMap"]["name"])
            assert "extra_model_paths.yaml" in paths["data"]
            assert (
                yaml.safe_load(paths["data"]["extra_model_paths.yaml"])["sdq"]["base_path"]
                == MODELS_MOUNT
            )


def test_components_carry_no_launch_args_of_their_own() -> None:
    for runtime_type in RuntimeType:
        patch = K8S_ROOT / "components" / runtime_type.value / "runtime.yaml"
        if not patch.is_file():
            continue
        doc = yaml.safe_load(patch.read_text(encoding="utf-8"))
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert "args" not in container and "command" not in container, patch
