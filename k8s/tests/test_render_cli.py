"""The sdq-k8s CLI end to end: render an overlay, then `kubectl kustomize` it and schema-check
every object (an external tool and the schemas: the integration layer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sdq_k8s.__main__ import main
from sdq_k8s.render import K8S_ROOT

pytestmark = pytest.mark.integration

CONFIG = K8S_ROOT.parent / "config.yaml"


def test_cli_renders_then_validates_an_overlay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "staging"
    args = ["--config", str(CONFIG), "--env", "staging"]
    assert main(["render", *args, "--outputs", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert "EXAMPLE values" in capsys.readouterr().err
    top = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert top["resources"] == ["namespace.yaml", "cluster", "namespaced"]
    assert main(["check", *args, "--dir", str(out)]) == 0
    assert ", 0 invalid" in capsys.readouterr().out
