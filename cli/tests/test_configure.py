"""`sdq configure` builds a profile from `make apply`'s outputs and API Gateway (moto)."""

from __future__ import annotations

import json
import stat

import boto3
import pytest

from sdq_cli.errors import Exit
from sdq_cli.main import main

pytestmark = pytest.mark.integration


def configure(outputs, repo_root, profile) -> int:
    argv = ["configure", "--outputs", str(outputs), "--config", str(repo_root / "config.yaml")]
    return main([*argv, "--write", str(profile)])


def test_profile_from_outputs_reads_the_key_value_from_api_gateway(
    aws, repo_root, tmp_path, capsys
):
    apigw = boto3.client("apigateway")
    key = apigw.create_api_key(name="sdq-default", enabled=True, value="k" * 30)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "routing.json").write_text(
        json.dumps(
            {
                "api_url": "https://abc.execute-api.us-west-2.amazonaws.com/live/",
                "api_key_id": key["id"],
                "output_bucket": "sdq-outputs-example",
            }
        )
    )
    profile = tmp_path / "profile.json"
    code = configure(outputs, repo_root, profile)
    assert code == Exit.OK
    assert json.loads(profile.read_text()) == {
        "api_url": "https://abc.execute-api.us-west-2.amazonaws.com/live",
        "api_key": "k" * 30,
        "region": "us-west-2",
        "output_bucket": "sdq-outputs-example",
    }
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert "k" * 30 not in capsys.readouterr().out


def test_missing_outputs_and_unknown_keys_are_clear_errors(aws, repo_root, tmp_path, capsys):
    code = configure(tmp_path, repo_root, tmp_path / "p.json")
    assert code == Exit.USAGE
    assert "run `make apply` first" in capsys.readouterr().err
    (tmp_path / "routing.json").write_text(
        json.dumps({"api_url": "https://x", "api_key_id": "nope"})
    )
    code = configure(tmp_path, repo_root, tmp_path / "p.json")
    assert code == Exit.AUTH
    assert "cannot read the API key nope" in capsys.readouterr().err
