"""Renderer inputs: IaC outputs parsing, pinning, missing pieces, the CLI's config errors
(the CLI end to end, with kubectl: test_render_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdq_contracts.config import load_config
from sdq_k8s.__main__ import main
from sdq_k8s.outputs import (
    EXAMPLE_OUTPUTS,
    OutputsError,
    image_is_pinned,
    parse_outputs,
    resolve_outputs,
)
from sdq_k8s.render import (
    DEFAULT_AMI_ALIAS,
    K8S_ROOT,
    Knobs,
    RenderError,
    RenderRequest,
    check_ami_alias,
    node_user_data,
    render_overlay,
    split_image,
)
from sdq_k8s.validate import validate_docs

pytestmark = pytest.mark.unit

CONFIG = K8S_ROOT.parent / "config.yaml"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE_OUTPUTS.read_text())
    return data


@pytest.mark.parametrize(
    ("ref", "pinned"),
    [
        ("repo/agent:1.2.3", True),
        ("registry:5000/agent@sha256:" + "b" * 64, True),
        ("registry:5000/agent", False),
        ("agent:latest", False),
        ("agent", False),
    ],
)
def test_image_pinning(ref: str, pinned: bool) -> None:
    assert image_is_pinned(ref) is pinned


def test_split_image_keeps_registry_port_and_digest() -> None:
    assert split_image("reg:5000/a/b:1.0") == {"newName": "reg:5000/a/b", "newTag": "1.0"}
    assert split_image("reg/a@sha256:" + "c" * 64) == {
        "newName": "reg/a",
        "digest": "sha256:" + "c" * 64,
    }
    with pytest.raises(RenderError, match="not pinned"):
        split_image("reg/a:latest")


def test_unpinned_agent_image_is_refused_with_the_field_named() -> None:
    data = _example()
    data["images"]["queue_agent"] = "reg/sdq-queue-agent:latest"
    with pytest.raises(OutputsError, match=r"images\.queue_agent"):
        parse_outputs(data)


def test_bad_queue_url_is_refused() -> None:
    data = _example()
    data["runtimes"]["sdruntime"]["queue_url"] = "http://localhost/queue"
    with pytest.raises(OutputsError, match=r"runtimes\.sdruntime\.queue_url"):
        parse_outputs(data)


def test_real_outputs_win_over_the_example(tmp_path: Path) -> None:
    assert resolve_outputs(tmp_path)[1] == EXAMPLE_OUTPUTS
    real = _example() | {"example": False, "status_table_name": "prod-status"}
    (tmp_path / "k8s.json").write_text(json.dumps({k: {"value": v} for k, v in real.items()}))
    outputs, source = resolve_outputs(tmp_path)
    assert source == tmp_path / "k8s.json"
    assert (outputs.example, outputs.status_table_name) == (False, "prod-status")


def test_runtime_without_outputs_is_an_error(tmp_path: Path) -> None:
    data = _example()
    del data["runtimes"]["comfyui"]
    req = RenderRequest(
        env="dev", config=load_config(CONFIG), outputs=parse_outputs(data), out_dir=tmp_path / "o"
    )
    with pytest.raises(RenderError, match="comfyui"):
        render_overlay(req)
    assert not (tmp_path / "o").exists()


def test_user_data_refuses_a_script_with_the_heredoc_marker() -> None:
    outputs = parse_outputs(_example())
    with pytest.raises(RenderError, match="heredoc"):
        node_user_data(load_config(CONFIG), outputs, "echo\nSDQ_MODEL_SYNC_EOF\n", Knobs())


def test_cli_reports_a_bad_config_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("stack_name: sdq\n")
    assert main(["render", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "invalid deployment config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        ("Deployment", "sd15-runtime", True),
        ("ConfigMap", "agent-env-7f8c9d", True),
        ("Deployment", "Bad_Name", False),
        ("Deployment", "sd15-", False),
        ("NodePool", "a.b", False),  # becomes the karpenter.sh/nodepool label value
        ("ConfigMap", "a.b", True),
        ("NodePool", "x" * 64, False),
        ("Service", "1collector", False),
        ("Namespace", "", False),
    ],
)
def test_metadata_names_follow_kubernetes_rules(kind: str, name: str, ok: bool) -> None:
    doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    findings = [f for f in validate_docs([doc], "1.33") if "metadata.name" in f.message]
    assert (findings == []) is ok, findings


def test_check_reports_a_rendered_object_with_a_bad_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dev"
    args = ["--config", str(CONFIG), "--env", "dev"]
    assert main(["render", *args, "--outputs", str(tmp_path / "none"), "--out", str(out)]) == 0
    top = out / "kustomization.yaml"
    data = yaml.safe_load(top.read_text())
    data["namePrefix"] = "Bad_"  # every object's name becomes invalid
    top.write_text(yaml.safe_dump(data))
    assert main(["check", *args, "--dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "INVALID Deployment/Bad_sdruntime-runtime: metadata.name" in err
    assert "DNS-1123" in err


@pytest.mark.parametrize("alias", ["al2023@latest", "al2@v20260714", "al2023@20260714", ""])
def test_ami_alias_must_pin_an_al2023_release(alias: str, tmp_path: Path) -> None:
    req = RenderRequest(
        env="dev",
        config=load_config(CONFIG),
        outputs=parse_outputs(_example()),
        out_dir=tmp_path / "o",
        knobs=Knobs(ami_alias=alias),
    )
    with pytest.raises(RenderError, match="pinned AL2023 release"):
        render_overlay(req)


def test_default_ami_alias_is_a_pinned_release() -> None:
    assert check_ami_alias(Knobs().ami_alias) == DEFAULT_AMI_ALIAS
    assert DEFAULT_AMI_ALIAS.startswith("al2023@v")
