"""The shared logs and traces bootstrap: level parsing, scrubbing, X-Ray ids, exports."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import structlog
from opentelemetry import trace

from sdq_observability.logs import REDACTED, Scrubber, configure_logging, parse_level
from sdq_observability.tracing import configure_tracing, continued_trace, otlp_traces_url
from sdq_observability.xray import format_xray_id, xray_trace_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "level"),
    [("info", logging.INFO), ("DEBUG", logging.DEBUG), (" Warning ", logging.WARNING)],
)
def test_levels_parse_in_any_case(text: str, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["verbose", "", "5", "CRITICALLY"])
def test_an_unknown_level_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="log level must be one of DEBUG, INFO, WARNING, ERROR"):
        parse_level(text)


def test_levels_below_the_configured_one_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream)
    try:
        structlog.get_logger().info("quiet")
        structlog.get_logger().warning("loud", n=1)
    finally:
        configure_logging("INFO")
    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    assert (line["event"], line["level"], line["n"]) == ("loud", "warning", 1)
    assert line["timestamp"].endswith("Z")


def test_scrubber_cleans_nested_values_and_named_secrets() -> None:
    scrub = Scrubber(["s3cr3t-value", "abc"])  # too short to scrub: "abc" stays
    event = scrub(
        None,
        "info",
        {
            "event": "x",
            "nested": {"inner": [{"X-Api-Key": "k"}, "see s3cr3t-value here"]},
            "note": "abc is fine",
            "cookie": "c=1",
        },
    )
    assert event["nested"] == {"inner": [{"X-Api-Key": REDACTED}, f"see {REDACTED} here"]}
    assert event["note"] == "abc is fine"
    assert event["cookie"] == REDACTED


def test_download_links_never_survive_scrubbing() -> None:
    """A notification logged whole, a bare query string, a link percent-encoded in another URL."""
    link = (
        "http://127.0.0.1:5000/out/t/t-1.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Fus-west-2%2Fs3%2Faws4_request"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN&X-Amz-Signature=feedface0123456789"
    )
    quoted = urllib.parse.quote(link, safe="")
    scrub = Scrubber()
    event = scrub(
        None,
        "info",
        {
            "event": "x",
            "notification": {"files": [{"url": "s3://out/t/t-1.png", "download_url": link}]},
            "query": link.split("?", 1)[1],
            "redirect": f"https://example.com/go?to={quoted}",
            "text": f"fetched {link} ok",
        },
    )
    dumped = json.dumps(event)
    for leaked in ("ASIAEXAMPLE", "EXAMPLETOKEN", "feedface0123456789"):
        assert leaked not in dumped
    assert event["notification"]["files"][0] == {
        "url": "s3://out/t/t-1.png",
        "download_url": REDACTED,
    }
    assert event["text"] == f"fetched http://127.0.0.1:5000/out/t/t-1.png?{REDACTED} ok"


def test_x_ray_ids() -> None:
    assert format_xray_id(0x5759E988BD862E3FE1BE46A994272793) == (
        "1-5759e988-bd862e3fe1be46a994272793"
    )
    assert xray_trace_id(trace.INVALID_SPAN) is None
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with continued_trace(header):
        assert xray_trace_id() == "1-5759e988-bd862e3fe1be46a994272793"
    assert xray_trace_id() is None
    with continued_trace("garbage"):
        assert xray_trace_id() is None


def test_otlp_endpoint_gets_the_traces_path_once() -> None:
    assert otlp_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"


def test_spans_go_to_the_trace_dir_as_json_lines(tmp_path: Path) -> None:
    # In a fresh interpreter: the export is added to the process's provider for its lifetime.
    probe = (
        "import sys\n"
        "from opentelemetry import trace\n"
        "from sdq_observability.tracing import configure_tracing\n"
        "provider = configure_tracing('sdq-test', trace_dir=sys.argv[1])\n"
        "assert provider is configure_tracing('sdq-test', trace_dir=sys.argv[1])\n"
        "with trace.get_tracer('t').start_as_current_span('unit-of-work') as span:\n"
        "    print(format(span.get_span_context().trace_id, '032x'))\n"
        "provider.shutdown()\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    wanted = run.stdout.strip()
    [written] = list(tmp_path.glob("sdq-test-*.jsonl"))
    lines = [json.loads(raw) for raw in written.read_text().splitlines()]
    assert [(s["name"], s["context"]["trace_id"]) for s in lines] == [
        ("unit-of-work", f"0x{wanted}")
    ]


def test_without_an_export_tracing_stays_off_even_beside_an_sdk_provider(spans: object) -> None:
    # The agent instruments aiobotocore only on a provider this returns: none without an export.
    assert configure_tracing("sdq-test") is None
