"""Trace ids as X-Ray writes them (OpenTelemetry API only: no SDK, no exporter)."""

from __future__ import annotations

from opentelemetry import trace


def format_xray_id(trace_id: int) -> str:
    """A 128-bit OpenTelemetry trace id as ``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy``."""
    hexid = format(trace_id, "032x")
    return f"1-{hexid[:8]}-{hexid[8:]}"


def xray_trace_id(span: trace.Span | None = None) -> str | None:
    """The trace id of ``span`` (default: the current one) in X-Ray form; None outside a
    recorded trace."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return format_xray_id(ctx.trace_id) if ctx.is_valid else None
