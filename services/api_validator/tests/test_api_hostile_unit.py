"""Client mistakes that used to answer 500 (issue 14): each is a 400 naming the problem, and a
seeded, bounded fuzz over both API versions and the status/cancel routes never sees a 5xx.

More fuzzing: ``pytest --hypothesis-profile=sdq-fuzz services/api_validator/tests``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdq_contracts.messages import TaskState

pytestmark = pytest.mark.unit

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()


def t2i(task_id: str = "hostile", **content: Any) -> dict[str, Any]:
    return {
        "task": {
            "metadata": {"id": task_id, "runtime": "sdruntime", "tasktype": "text-to-image"},
            "content": {"prompt": "a cat", "steps": 4} | content,
        }
    }


def i2i(image: Any) -> dict[str, Any]:
    body = t2i("i2i", init_images=[image])
    body["task"]["metadata"]["tasktype"] = "image-to-image"
    return body


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_json_nested_a_thousand_deep_is_a_400(h):
    body = '{"task": ' + "[" * 1000 + "]" * 1000 + "}"
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    assert (status, answer["error"]["code"]) == (400, "too_deep")
    assert "nested" in answer["error"]["message"]
    assert h.store.rows == {} and h.publisher.published == []


def test_context_nested_300_levels_is_a_400_naming_the_field(h):
    body = t2i()
    body["task"]["metadata"]["context"] = nested(300)
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    assert (status, answer["error"]["code"]) == (400, "too_deep")
    assert answer["error"]["field"].startswith("task.metadata.context.k.k")
    assert h.store.rows == {}


@pytest.mark.parametrize("where", ["value", "key"])
def test_a_lone_surrogate_is_a_400_naming_the_field(h, where):
    body = t2i()
    if where == "value":
        body["task"]["content"]["prompt"] = "cat \ud800"
        field = "task.content.prompt"
    else:
        body["task"]["content"]["bad\udfff"] = 1
        field = "task.content.bad\udfff"
    status, answer, _ = h.call("POST", "/v1alpha2", json.dumps(body))  # \ud800 escapes
    assert (status, answer["error"]["code"]) == (400, "invalid_text")
    assert answer["error"]["field"] == field
    assert h.store.rows == {}


def test_a_lone_surrogate_in_a_v1alpha1_body_is_a_400(h, repo_root):
    body = json.loads((repo_root / "tests/examples/v1alpha1-text-to-image.json").read_text())
    body["prompt"] = "\ud83d"
    status, answer, _ = h.call("POST", "/v1alpha1", json.dumps(body))
    assert (status, answer["error"]["field"]) == (400, "prompt")


def test_a_5000_digit_integer_is_a_400(h):
    body = json.dumps(t2i()).replace('"steps": 4', '"steps": ' + "9" * 5000)
    status, answer, _ = h.call("POST", "/v1alpha2", body)
    assert (status, answer["error"]["code"]) == (400, "invalid_number")


def test_an_integer_beyond_64_bits_is_a_400_naming_the_field(h):
    status, answer, _ = h.call("POST", "/v1alpha2", t2i(seed=2**80))
    assert (status, answer["error"]["field"]) == (400, "task.content.seed")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(b"just some text, no image").decode(), "not a PNG"),
        ("data:image/png;base64,@@@", "not valid base64"),
        ("data:image/png,rawbytes", "data:image"),
    ],
)
def test_bad_base64_images_are_a_400_naming_the_field(h, image, message):
    status, answer, _ = h.call("POST", "/v1alpha2", i2i(image))
    assert status == 400, answer
    assert answer["error"]["field"] == "task.content.init_images[0]"
    assert answer["error"]["code"] == "bad_image" and message in answer["error"]["message"]
    assert h.store.rows == {} and h.publisher.published == []


@pytest.mark.parametrize("image", [PNG, f"data:image/png;base64,{PNG}", "https://x.example/a.png"])
def test_good_images_are_accepted(h, image):
    assert h.call("POST", "/v1alpha2", i2i(image))[0] == 202


def test_get_never_500s_for_a_stored_row_and_cancel_of_it_is_a_409(h):
    # what an old agent left for a task message the API never saw: no location, no TTL
    h.store.rows["partial"] = {"id": "partial", "status": "failed", "runtime": "sdruntime"}
    status, answer, _ = h.call("GET", "/v1alpha2/tasks/partial")
    assert (status, answer["id"], answer["status"]) == (200, "partial", "failed")
    assert answer["error"]["code"] == "unreadable_status"
    assert h.call("DELETE", "/v1alpha2/tasks/partial")[0] == 409


def test_cancelling_a_queued_task_leaves_its_notification_to_the_agent(h):
    """Issue 14 case 3: the row is cancelled and unannounced; the agent that receives the
    message publishes the one `cancelled` notification (see the agent's and e2e tests)."""
    h.call("POST", "/v1alpha2", t2i("q"))
    status, row, _ = h.call("DELETE", "/v1alpha2/tasks/q")
    assert (status, row["status"]) == (200, "cancelled")
    assert h.store.rows["q"]["announced"] is False
    assert h.store.record("q").status is TaskState.CANCELLED


def test_waiting_to_retry_is_shown_with_the_attempt_and_last_error(h):
    h.call("POST", "/v1alpha2", t2i("w"))
    h.store.rows["w"] |= {
        "status": "running",
        "attempts": 1,
        "stage": "waiting_to_retry",
        "retry_at": "2026-06-01T12:00:20+00:00",
        "error": {"code": "runtime_unavailable", "message": "HTTP 503", "permanent": False},
    }
    status, row, _ = h.call("GET", "/v1alpha2/tasks/w")
    assert status == 200
    assert (row["stage"], row["attempts"], row["error"]["code"]) == (
        "waiting_to_retry",
        1,
        "runtime_unavailable",
    )
    assert row["retry_at"].startswith("2026-06-01T12:00:20")


# --------------------------------------------------------------------------- the fuzz

_hostile_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\U0001d518", "\u202e", "%00", "../.."]),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _hostile_text,
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_hostile_text, inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def hostile_body(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["value", "deep", "digits", "in_t2i", "in_v1", "raw", "none"]))
    if kind == "deep":
        n = draw(st.integers(50, 3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return '{"task":' + opener * n + "1" + closer * n + "}"
    if kind == "digits":
        return '{"task": {"metadata": {"context": ' + "7" * draw(st.integers(20, 6000)) + "}}}"
    if kind == "in_t2i":
        body = t2i(draw(st.sampled_from(["f1", "f2", "bad id", "\ud800"])))
        body["task"]["metadata"]["context"] = draw(_value)
        body["task"]["content"][draw(_hostile_text)] = draw(_value)
        return json.dumps(body)
    if kind == "in_v1":
        return json.dumps(
            {
                "alwayson_scripts": {
                    "task": draw(st.sampled_from(["text-to-image", "image-to-image"])),
                    "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors",
                    "id_task": draw(st.sampled_from(["v1", "\udcff"])),
                    "image_link": draw(st.one_of(st.none(), _hostile_text)),
                },
                "prompt": draw(_value),
                "init_images": [draw(_hostile_text)],
            }
        )
    if kind == "raw":
        return draw(st.binary(max_size=48)).decode("latin-1")
    if kind == "none":
        return None
    return json.dumps(draw(_value))


@settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(
        [
            ("POST", "/v1alpha1"),
            ("POST", "/v1alpha2"),
            ("GET", "/v1alpha2/tasks/f1"),
            ("DELETE", "/v1alpha2/tasks/f1"),
            ("GET", "/v1alpha2/tasks/\ud800"),
            ("DELETE", "/v1alpha2/tasks/" + "x" * 100),
            ("PATCH", "/v1alpha2"),
        ]
    ),
    body=hostile_body(),
)
def test_fuzz_never_answers_5xx(h, route, body):
    method, path = route
    if method == "GET":  # a stored row of any shape must read without a 500
        h.store.rows.setdefault("f1", {"id": "f1", "status": "running"})
    status, answer, _ = h.call(method, path, body)
    assert status < 500, answer
    if status >= 400:
        assert answer["error"]["code"] and answer["error"]["message"]
