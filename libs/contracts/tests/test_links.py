"""Describing outputs known only by their URI, and links that never stay on what is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sdq_contracts.links import describe_uri, output_files, with_link, without_link
from sdq_contracts.messages import OutputKind, OutputObject

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("uri", "kind", "content_type"),
    [
        ("s3://b/p/t-1.png", OutputKind.IMAGE, "image/png"),
        ("s3://b/p/t-1.JPG", OutputKind.IMAGE, "image/jpeg"),
        ("s3://b/p/t-2.gif", OutputKind.ANIMATION, "image/gif"),
        ("s3://b/p/t-3.mp4", OutputKind.VIDEO, "video/mp4"),
        ("s3://b/p/t-4.webm", OutputKind.VIDEO, "video/webm"),
        ("s3://b/p/t-5.wav", OutputKind.AUDIO, "audio/wav"),
        ("s3://b/p/t-6.json", OutputKind.TEXT, "application/json"),
        ("s3://b/p/t-7.bin", OutputKind.TEXT, "application/octet-stream"),
    ],
)
def test_an_output_known_by_uri_is_described_by_its_extension(uri, kind, content_type):
    file = describe_uri(uri)
    assert (file.url, file.kind, file.content_type, file.bytes) == (uri, kind, content_type, 0)


def test_output_files_follow_the_uri_order_and_keep_known_metadata_without_links():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    known = OutputObject(
        url="s3://b/p/t-2.webp", kind=OutputKind.ANIMATION, content_type="image/webp", bytes=9
    )
    stale = with_link(known, "https://old-link", now, 60)
    files = output_files(["s3://b/p/t-1.png", "s3://b/p/t-2.webp"], [stale])
    assert [f.url for f in files] == ["s3://b/p/t-1.png", "s3://b/p/t-2.webp"]
    assert files[1] == known  # its metadata, not its old link
    assert files[0].kind is OutputKind.IMAGE and files[0].download_url is None
    # A file listed in ``files`` only (no URI) is kept, after the URIs.
    assert [f.url for f in output_files([], [known])] == [known.url]


def test_with_link_sets_the_expiry_and_without_link_removes_both():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    linked = with_link(describe_uri("s3://b/k.png"), "https://link", now, 900)
    assert (linked.download_url, linked.download_expires_at) == (
        "https://link",
        now + timedelta(seconds=900),
    )
    bare = without_link(linked)
    assert (bare.download_url, bare.download_expires_at) == (None, None)
