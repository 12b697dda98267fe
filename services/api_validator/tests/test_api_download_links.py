"""GET /v1alpha2/tasks/{id} answers with a fresh pre-signed link for every output: with fakes
(every call signs again; old rows that list only URIs get links too; the row stays link-free),
then with the real boto3 adapters against the moto server (a plain GET of each link returns the
object's bytes, with the configured X-Amz-Expires)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from sdq_api_validator.adapters.http import Api
from sdq_api_validator.app import build_api
from sdq_api_validator.domain.service import ApiSettings, TaskService
from sdq_api_validator.settings import load_settings
from sdq_contracts.config import runtimes_env
from sdq_contracts.messages import OutputKind, OutputObject, StatusRecord, TaskState
from sdq_contracts.requests import TaskType
from sdq_local.provision import provision

PNG = "s3://outputs/p/t/t-abcd-1.png"
MP4 = "s3://outputs/p/t/t-abcd-2.mp4"


class CountingSigner:
    """Signs ``https://signed/<bucket>/<key>?n=<call number>``: a new link on every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def sign(self, bucket: str, key: str, seconds: int) -> str | None:
        self.calls.append((bucket, key, seconds))
        return f"https://signed/{bucket}/{key}?n={len(self.calls)}"


class NoCredentials:
    def sign(self, bucket: str, key: str, seconds: int) -> str | None:
        return None


def _row(status: TaskState = TaskState.COMPLETED, **fields: Any) -> dict[str, Any]:
    record = StatusRecord(
        id="t",
        runtime="sdruntime",
        tasktype=TaskType.TEXT_TO_IMAGE,
        status=status,
        output_location="s3://outputs/p/t",
        **fields,
    )
    return record.to_item()


def _service(harness, signer, seconds: int = 1800) -> tuple[Api, Any]:
    """The harness's fakes behind a TaskService that signs with ``signer``."""
    cfg = harness.cfg
    service = TaskService(
        ApiSettings(runtimes=cfg.runtimes, output_bucket="outputs", download_link_seconds=seconds),
        harness.store,
        harness.publisher,
        harness.claims,
        signer,
    )
    return Api(service, max_body_bytes=cfg.api.max_body_bytes), harness.store


@pytest.mark.unit
def test_every_get_signs_fresh_links_for_every_output_old_rows_included(h, call_api):
    signer = CountingSigner()
    api, store = _service(h, signer, seconds=1800)
    png = OutputObject(
        url=PNG, kind=OutputKind.IMAGE, content_type="image/png", bytes=123, width=8, height=8
    )
    # A row from before outputs carried metadata: the MP4 is known only by its URI.
    store.rows["t"] = _row(outputs=[PNG, MP4], files=[png])
    stored = json.dumps(store.rows["t"], default=str)

    before = datetime.now(UTC)
    status, first, _ = call_api(api, "GET", "/v1alpha2/tasks/t")
    _, second, _ = call_api(api, "GET", "/v1alpha2/tasks/t")
    after = datetime.now(UTC)

    assert status == 200
    assert [f["url"] for f in first["files"]] == [PNG, MP4] == first["outputs"]
    assert first["files"][0] | {"download_url": "", "download_expires_at": ""} == {
        "url": PNG,
        "kind": "image",
        "content_type": "image/png",
        "bytes": 123,
        "width": 8,
        "height": 8,
        "download_url": "",
        "download_expires_at": "",
    }
    assert (first["files"][1]["kind"], first["files"][1]["content_type"]) == ("video", "video/mp4")
    assert [f["download_url"] for f in first["files"]] == [
        "https://signed/outputs/p/t/t-abcd-1.png?n=1",
        "https://signed/outputs/p/t/t-abcd-2.mp4?n=2",
    ]
    assert [f["download_url"] for f in second["files"]] == [
        "https://signed/outputs/p/t/t-abcd-1.png?n=3",
        "https://signed/outputs/p/t/t-abcd-2.mp4?n=4",
    ]
    assert {s for _, _, s in signer.calls} == {1800}
    for file in first["files"]:
        expires = datetime.fromisoformat(file["download_expires_at"])
        assert before + timedelta(seconds=1800) <= expires <= after + timedelta(seconds=1800)
    assert json.dumps(store.rows["t"], default=str) == stored  # the row holds no link


@pytest.mark.unit
def test_a_row_without_outputs_has_no_files_and_unsignable_outputs_keep_their_metadata(
    make_harness, cfg, call_api
):
    api, store = _service(make_harness(cfg), CountingSigner())
    store.rows["t"] = _row(status=TaskState.QUEUED)
    _, answer, _ = call_api(api, "GET", "/v1alpha2/tasks/t")
    assert answer.get("files", []) == []

    api, store = _service(make_harness(cfg), NoCredentials())
    store.rows["t"] = _row(outputs=[PNG])
    status, answer, _ = call_api(api, "GET", "/v1alpha2/tasks/t")
    assert status == 200
    assert answer["files"] == [
        {"url": PNG, "kind": "image", "content_type": "image/png", "bytes": 0}
    ]


def _get(url: str) -> bytes:
    """A plain HTTP GET: no AWS credentials, the link is the only authority."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


@pytest.mark.integration
def test_status_links_fetch_the_objects_from_s3_without_credentials(aws, cfg, call_api, capsys):
    p = provision(cfg)
    s3 = boto3.client("s3")
    bodies = {"p/t/t-abcd-1.png": b"\x89PNG fake png bytes", "p/t/t-abcd-2.mp4": b"fake mp4"}
    for key, body in bodies.items():
        s3.put_object(Bucket=p.output_bucket, Key=key, Body=body)
    uris = [f"s3://{p.output_bucket}/{key}" for key in bodies]
    boto3.client("dynamodb").put_item(
        TableName=p.status_table,
        Item={
            k: boto3.dynamodb.types.TypeSerializer().serialize(v)
            for k, v in _row(outputs=uris).items()
        },
    )
    api = build_api(
        load_settings(
            {
                "SDQ_RUNTIMES": runtimes_env(cfg.runtimes),
                "SDQ_INPUT_TOPIC_ARN": p.input_topic_arn,
                "SDQ_STATUS_TABLE": p.status_table,
                "SDQ_OUTPUT_BUCKET": p.output_bucket,
                "SDQ_DOWNLOAD_LINK_SECONDS": "1200",
            }
        ),
        endpoint_url=aws.endpoint_url,
    )
    before = datetime.now(UTC).replace(microsecond=0)
    status, answer, _ = call_api(api, "GET", "/v1alpha2/tasks/t")
    after = datetime.now(UTC)
    assert status == 200
    links = [f["download_url"] for f in answer["files"]]
    for link, key in zip(links, bodies, strict=True):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        assert query["X-Amz-Expires"] == ["1200"]
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert before <= signed <= after  # signed by this call
        assert link.startswith(aws.endpoint_url)
        assert _get(link) == bodies[key]
    raw = boto3.client("dynamodb").get_item(TableName=p.status_table, Key={"id": {"S": "t"}})
    assert "X-Amz-" not in json.dumps(raw["Item"])
    logs = capsys.readouterr().out
    assert "X-Amz-Signature" not in logs and not any(link in logs for link in links)
