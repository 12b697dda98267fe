from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sdq_contracts.naming import MODEL_CACHE_HOST_PATH
from sdq_model_sync.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

DOMAIN = Path(__file__).resolve().parents[1] / "src" / "sdq_model_sync" / "domain"
FORBIDDEN_MODULES = {"boto3", "botocore", "aioboto3", "aiobotocore", "aiohttp", "os", "subprocess"}


def test_settings_defaults_and_field_errors() -> None:
    settings = load_settings(
        {"SDQ_CLUSTER_NAME": "sdq", "SDQ_MODEL_BUCKET": "sdq-models", "AWS_REGION": "us-west-2"}
    )
    assert settings.node_script_path == "/opt/sdq/sdq-model-sync.sh"
    assert settings.model_cache_dir == MODEL_CACHE_HOST_PATH
    assert (settings.model_prefix, settings.region) == ("", "us-west-2")
    with pytest.raises(SettingsError) as err:
        load_settings(
            {
                "SDQ_MODEL_BUCKET": "Bad_Bucket",
                "SDQ_MODEL_CACHE_DIR": "relative",
                "SDQ_SYNC_TIMEOUT_SECONDS": "5",
            }
        )
    errors = dict(err.value.errors)
    assert errors["SDQ_CLUSTER_NAME"] == "Field required"
    assert errors["SDQ_MODEL_BUCKET"] == "not a valid S3 bucket name: 'Bad_Bucket'"
    assert errors["SDQ_MODEL_CACHE_DIR"] == "must be an absolute path, got 'relative'"
    assert "greater than or equal to 60" in errors["SDQ_SYNC_TIMEOUT_SECONDS"]
    assert "SDQ_MODEL_BUCKET: not a valid S3 bucket name" in str(err.value)


def test_domain_imports_no_aws_http_or_environment() -> None:
    files = sorted(DOMAIN.glob("*.py"))
    assert files, DOMAIN
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                roots = set()
            assert not roots & FORBIDDEN_MODULES, f"{path.name} imports {roots & FORBIDDEN_MODULES}"
            if isinstance(node, ast.Attribute | ast.Name):
                name = node.attr if isinstance(node, ast.Attribute) else node.id
                assert name not in {"environ", "getenv"}, f"{path.name} reads the environment"
