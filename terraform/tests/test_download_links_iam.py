"""Download links act with the permissions of whoever signed them: the synthesized policies let
the API Lambda (status answers) and each runtime's agent (notifications) read the output objects,
nothing more, and both Lambda and agent are told the configured link lifetime."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from sdq_infra import names

if TYPE_CHECKING:
    from conftest import Synth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _statements(synth: Synth, stack: str, fragment: str) -> list[dict[str, Any]]:
    [found] = [
        json.loads(body["policy"])["Statement"]
        for name, body in synth.resources(stack, "aws_iam_role_policy").items()
        if fragment in name
    ]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _objects_of(bucket: str, resources: list[str]) -> bool:
    """The bucket's objects, whatever the partition (ARNs are built with aws_partition)."""
    return resources == [r for r in resources if r.endswith(f":s3:::{bucket}/*")] != []


def _readers_of(statements: list[dict[str, Any]], bucket: str) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and "s3:GetObject" in _actions(s)
        and any(r.endswith(f":s3:::{bucket}/*") for r in s["Resource"])
    ]


def test_api_validator_may_read_output_objects_for_its_links(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    statements = _statements(synthesized, "routing", "api-validator")
    [link] = [s for s in statements if s.get("Sid") == "SignDownloadLinks"]
    # Least privilege: read, on the output bucket's objects only (not the bucket, not models).
    assert _actions(link) == ["s3:GetObject"]
    assert len(link["Resource"]) == 1 and _objects_of(cfg.buckets.outputs, link["Resource"])
    assert "Condition" not in link
    everything = {a for s in statements for a in _actions(s)}
    assert not {"s3:ListBucket", "s3:DeleteObject", "s3:*"} & everything
    assert not any(cfg.buckets.models in r for s in statements for r in s["Resource"])
    # The lifetime of the links comes from the deployment config.
    validator = next(iter(synthesized.resources("routing", "aws_lambda_function").values()))
    env = validator["environment"]["variables"]
    assert env["SDQ_DOWNLOAD_LINK_SECONDS"] == str(cfg.downloads.link_seconds)


def test_each_agent_may_read_its_output_objects_for_its_links(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    for runtime in cfg.runtimes:
        stack = names.runtime_stack_id(runtime)
        statements = _statements(synthesized, stack, "role-policy")
        assert _readers_of(statements, cfg.buckets.outputs), (
            f"{stack}: agent cannot sign working links"
        )
