"""The output checks of the case table (sdq_conformance.files) on real files made here: what
they accept, and that each disagreement between the row, the notification and the stored
object is reported."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av
import pytest
from PIL import Image

from sdq_conformance.files import FileFacts, check, measure
from sdq_contracts.messages import OutputObject

pytestmark = pytest.mark.unit

BUCKET = "s3://outputs/output/t1"


def webp_animation(size: tuple[int, int] = (32, 24)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in ("red", "blue", "red")]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def png(size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "green").save(out, format="PNG")
    return out.getvalue()


def mp4(size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("h264", rate=Fraction(8))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for colour in ("red", "blue"):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, colour))  # type: ignore[no-untyped-call]
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    return out.getvalue()


def stored(name: str, data: bytes, content_type: str, kind: str, **size: int) -> dict[str, Any]:
    return {
        "url": f"{BUCKET}/{name}",
        "kind": kind,
        "content_type": content_type,
        "bytes": len(data),
        **size,
    }


def run(
    files: list[dict[str, Any]],
    objects: dict[str, tuple[bytes, str]],
    *,
    notified: list[dict[str, Any]] | None = None,
) -> Any:
    record = {"status": "completed", "outputs": [f["url"] for f in files], "files": files}
    note = [OutputObject.model_validate(f) for f in (files if notified is None else notified)]
    return check(record, note, lambda url: objects[url])


def good() -> tuple[list[dict[str, Any]], dict[str, tuple[bytes, str]]]:
    anim, still, video = webp_animation(), png(), mp4()
    files = [
        stored("t1-1.webp", anim, "image/webp", "animation", width=32, height=24),
        stored("t1-2.png", still, "image/png", "image", width=32, height=24),
        stored("t1-3.mp4", video, "video/mp4", "video", width=32, height=24),
        stored("t1-4.txt", b"a caption", "text/plain; charset=utf-8", "text"),
    ]
    objects = {
        f"{BUCKET}/t1-1.webp": (anim, "image/webp"),
        f"{BUCKET}/t1-2.png": (still, "image/png"),
        f"{BUCKET}/t1-3.mp4": (video, "video/mp4"),
        f"{BUCKET}/t1-4.txt": (b"a caption", "text/plain; charset=utf-8"),
    }
    return files, objects


def test_consistent_outputs_give_their_facts_and_no_problem():
    files, objects = good()
    checked = run(files, objects)
    assert checked.problems == ()
    assert checked.facts == (
        FileFacts("animation", "image/webp", 32, 24),
        FileFacts("image", "image/png", 32, 24),
        FileFacts("video", "video/mp4", 32, 24),
        FileFacts("text", "text/plain"),
    )
    assert checked.images == ((32, 24),)
    assert checked.texts == ("a caption",)


@pytest.mark.parametrize(
    ("change", "index", "words"),
    [
        ({"bytes": 5}, 1, "bytes 5"),
        ({"width": 64}, 2, "files say 64x24"),
        ({"kind": "image"}, 0, "the bytes are animation"),
        ({"content_type": "image/jpeg"}, 1, "S3 content type"),
        ({"kind": "video", "content_type": "video/webm"}, 2, "extension .mp4"),
    ],
)
def test_each_disagreement_with_the_stored_object_is_a_problem(change, index, words):
    files, objects = good()
    files[index] = files[index] | change
    problems = run(files, objects).problems
    assert any(words in problem for problem in problems), problems


def test_a_notification_that_differs_from_the_row_is_a_problem():
    files, objects = good()
    notified = [dict(f) for f in files]
    notified[0]["bytes"] += 1
    problems = run(files, objects, notified=notified).problems
    assert any("notification files" in problem for problem in problems), problems


def test_outputs_without_metadata_are_a_problem():
    files, objects = good()
    record = {"status": "completed", "outputs": [f["url"] for f in files], "files": []}
    checked = check(record, [], lambda url: objects[url])
    assert any("are not outputs" in problem for problem in checked.problems)
    assert checked.images == ((32, 24),)  # still measured from the objects


def test_bytes_that_are_not_what_the_type_says_are_a_problem():
    assert measure(png(), "image/webp").problem == "stored as image/webp but the bytes are PNG"
    assert "PyAV cannot read" in measure(b"not a video", "video/mp4").problem
    assert measure(webp_animation(), "image/webp").kind == "animation"
    assert measure(mp4(), "video/mp4").width == 32
