"""The API's spans: one trace per request, continued from the caller's header, handed on to the
queue in the message's trace attribute and recorded on the status row."""

from __future__ import annotations

import json

import pytest
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.trace import SpanKind

from sdq_contracts.messages import ATTR_TRACE_HEADER

pytestmark = pytest.mark.unit


def _example(repo_root):
    return json.loads((repo_root / "tests/examples/v1alpha2-text-to-image.json").read_text())


def _xray(trace_id: int) -> str:
    hexid = format(trace_id, "032x")
    return f"1-{hexid[:8]}-{hexid[8:]}"


def test_submit_spans_form_one_tree_and_the_trace_travels_with_the_task(h, repo_root, spans):
    status, _, _ = h.call("POST", "/v1alpha2", _example(repo_root))
    assert status == 202
    finished = {s.name: s for s in spans.get_finished_spans()}
    root = finished["POST /v1alpha2"]
    assert root.kind is SpanKind.SERVER
    assert root.attributes["sdq.task_id"] == "example-t2i"
    assert root.attributes["http.status_code"] == 202
    for child in ("validate", "status.create", "sns.publish"):
        assert finished[child].parent.span_id == root.context.span_id
        assert finished[child].context.trace_id == root.context.trace_id
    assert finished["sns.publish"].kind is SpanKind.PRODUCER

    [(_, attributes)] = h.publisher.published
    carried = AwsXRayPropagator().extract({ATTR_TRACE_HEADER: attributes[ATTR_TRACE_HEADER]})
    from opentelemetry import trace

    carried_ctx = trace.get_current_span(carried).get_span_context()
    assert carried_ctx.trace_id == root.context.trace_id
    assert carried_ctx.span_id == finished["sns.publish"].context.span_id
    assert h.store.record("example-t2i").trace_id == _xray(root.context.trace_id)


def test_the_callers_trace_is_continued(h, repo_root, spans):
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    h.call("POST", "/v1alpha2", _example(repo_root), {"X-Amzn-Trace-Id": header})
    root = next(s for s in spans.get_finished_spans() if s.name == "POST /v1alpha2")
    assert _xray(root.context.trace_id) == "1-5759e988-bd862e3fe1be46a994272793"
    assert format(root.parent.span_id, "016x") == "53995c3f42cd8ad8"


@pytest.mark.parametrize(
    "garbage", ["", "Root=", "nonsense;;;", "Root=1-zz-yy;Parent=q;Sampled=9", "\x00" * 5]
)
def test_a_garbage_trace_header_starts_a_new_trace_and_the_task_is_accepted(
    h, repo_root, spans, garbage
):
    status, _, _ = h.call("POST", "/v1alpha2", _example(repo_root), {"X-Amzn-Trace-Id": garbage})
    assert status == 202
    root = next(s for s in spans.get_finished_spans() if s.name == "POST /v1alpha2")
    assert root.parent is None
    assert h.store.record("example-t2i").trace_id == _xray(root.context.trace_id)
