"""Property-based: random and mutated bodies and headers never get a 5xx, never queue an
invalid task, and a rejected request publishes and records nothing."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdq_contracts.messages import TaskMessage
from sdq_contracts.requests import TASK_TYPES_BY_RUNTIME, check_prefix

pytestmark = pytest.mark.unit

EXAMPLES = [
    "v1alpha2-text-to-image",
    "v1alpha2-image-to-image",
    "v1alpha2-extra-single-image",
    "v1alpha2-extra-batch-images",
    "v1alpha2-pipeline",
    "v1alpha1-text-to-image",
    "v1alpha1-image-to-image",
]

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
interesting_strings = st.sampled_from(
    [
        "",
        "..",
        "../x",
        "/abs",
        "a//b",
        "\x00",
        "sdruntime",
        "comfyui",
        "pipeline",
        "text-to-image",
        "image-to-image",
        "file:///etc/passwd",
        "http://169.254.169.254/",
        "x" * 70,
        "ok_id-1",
        "a/b/c",
    ]
)
headers = st.dictionaries(
    st.sampled_from(
        ["Content-Type", "content-type", "X-Api-Key", "Host", "X-Forwarded-Proto", "Authorization"]
    ),
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8"]),
    ),
    max_size=3,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_example(draw, bodies):
    name = draw(st.sampled_from(EXAMPLES))
    body = copy.deepcopy(bodies[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "string"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "string":
            parent[path[-1]] = draw(interesting_strings)
        else:
            parent[path[-1]] = draw(json_value)
    return ("/v1alpha1" if name.startswith("v1alpha1") else "/v1alpha2"), body


def check_invariants(h, status, answer, published_before, rows_before):
    assert status < 500, answer
    if status == 202:
        if len(h.publisher.published) == published_before + 1:
            message = TaskMessage.model_validate(h.publisher.published[-1][0])
            runtime = h.cfg.runtime(message.runtime)
            assert runtime is not None
            assert message.tasktype in TASK_TYPES_BY_RUNTIME[runtime.type]
            assert check_prefix(message.prefix) == message.prefix
            assert h.store.record(message.id).status.value == "queued"
        else:  # an idempotent replay publishes nothing new
            assert len(h.publisher.published) == published_before
    else:
        assert "error" in answer and answer["error"]["message"]
        assert len(h.publisher.published) == published_before
        assert h.store.rows.keys() == rows_before


@pytest.fixture(scope="module")
def bodies(repo_root):
    return {
        n: json.loads((repo_root / "tests" / "examples" / f"{n}.json").read_text())
        for n in EXAMPLES
    }


# Examples per run come from the hypothesis profile (conftest.py): CI-sized by default,
# HYPOTHESIS_PROFILE=thorough for thousands.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_examples(h, bodies, data):
    path, body = data.draw(mutated_example(bodies))
    before, rows = len(h.publisher.published), set(h.store.rows)
    status, answer, _ = h.call("POST", path, body, data.draw(headers))
    check_invariants(h, status, answer, before, rows)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/v1alpha1", "/v1alpha2", "/v1alpha2/tasks/x", "/nope"]),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    body=st.one_of(
        json_value.map(json.dumps),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
        st.none(),
    ),
    hdrs=headers,
)
def test_random_requests(h, path, method, body, hdrs):
    before, rows = len(h.publisher.published), set(h.store.rows)
    status, answer, _ = h.call(method, path, body, hdrs)
    check_invariants(h, status, answer, before, rows)
