"""S3Store.put_stream on a recording fake client: one PutObject for what fits in one part, a
multipart upload (parts in order, at most two in memory) for the rest, aborted on any failure."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sdq_queue_agent.adapters.aws import S3Store
from sdq_queue_agent.errors import AwsError, RuntimeUnavailableError

pytestmark = pytest.mark.unit


class RecordingS3:
    def __init__(self, fail_part: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.parts: dict[int, bytes] = {}
        self.fail_part = fail_part

    async def put_object(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("put_object", kw))
        return {}

    async def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("create_multipart_upload", kw))
        return {"UploadId": "u1"}

    async def upload_part(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("upload_part", {k: v for k, v in kw.items() if k != "Body"}))
        if kw["PartNumber"] == self.fail_part:
            raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPart")
        self.parts[kw["PartNumber"]] = kw["Body"]
        return {"ETag": f'"e{kw["PartNumber"]}"'}

    async def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("complete_multipart_upload", kw))
        return {}

    async def abort_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("abort_multipart_upload", kw))
        return {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


async def chunks(data: bytes, size: int, fail_at: int | None = None) -> AsyncGenerator[bytes, None]:
    for start in range(0, len(data), size):
        if fail_at is not None and start >= fail_at:
            raise RuntimeUnavailableError("GET view: runtime unreachable or died")
        yield data[start : start + size]


DATA = bytes(range(256)) * 3  # 768 bytes


async def test_what_fits_in_one_part_is_one_put_object() -> None:
    s3 = RecordingS3()
    size = await S3Store(s3, part_size=1024).put_stream(
        "b", "k.mp4", chunks(DATA, 100), "video/mp4"
    )
    assert size == len(DATA)
    assert s3.names() == ["put_object"]
    assert s3.calls[0][1] == {
        "Bucket": "b",
        "Key": "k.mp4",
        "Body": DATA,
        "ContentType": "video/mp4",
    }


async def test_an_empty_output_is_one_empty_object() -> None:
    s3 = RecordingS3()
    assert await S3Store(s3, part_size=16).put_stream("b", "k", chunks(b"", 4), "text/plain") == 0
    assert s3.names() == ["put_object"] and s3.calls[0][1]["Body"] == b""


async def test_a_larger_output_uploads_in_parts_in_order() -> None:
    s3 = RecordingS3()
    size = await S3Store(s3, part_size=200).put_stream("b", "k.mp4", chunks(DATA, 70), "video/mp4")
    assert size == len(DATA)
    assert s3.names() == [
        "create_multipart_upload",
        "upload_part",
        "upload_part",
        "upload_part",
        "upload_part",
        "complete_multipart_upload",
    ]
    assert s3.calls[0][1]["ContentType"] == "video/mp4"
    assert [len(s3.parts[n]) for n in (1, 2, 3, 4)] == [200, 200, 200, 168]
    assert b"".join(s3.parts[n] for n in (1, 2, 3, 4)) == DATA
    complete = s3.calls[-1][1]
    assert complete["UploadId"] == "u1"
    assert complete["MultipartUpload"] == {
        "Parts": [{"PartNumber": n, "ETag": f'"e{n}"'} for n in (1, 2, 3, 4)]
    }


async def test_a_failed_part_aborts_the_upload() -> None:
    s3 = RecordingS3(fail_part=2)
    with pytest.raises(AwsError, match="UploadPart failed: InternalError"):
        await S3Store(s3, part_size=200).put_stream("b", "k", chunks(DATA, 70), "video/mp4")
    assert s3.names()[-1] == "abort_multipart_upload"
    assert "complete_multipart_upload" not in s3.names()
    assert s3.calls[-1][1] == {"Bucket": "b", "Key": "k", "UploadId": "u1"}


async def test_the_runtime_dying_mid_stream_aborts_the_upload() -> None:
    s3 = RecordingS3()
    with pytest.raises(RuntimeUnavailableError):
        await S3Store(s3, part_size=200).put_stream(
            "b", "k", chunks(DATA, 70, fail_at=500), "video/mp4"
        )
    assert s3.names()[0] == "create_multipart_upload"
    assert s3.names()[-1] == "abort_multipart_upload"
    assert "complete_multipart_upload" not in s3.names()
