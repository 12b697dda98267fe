"""The API's tracer and the X-Ray form of trace ids (OpenTelemetry API only: no exporter here)."""

from __future__ import annotations

from opentelemetry import trace

tracer = trace.get_tracer("sdq.api")


def xray_trace_id(span: trace.Span | None = None) -> str | None:
    """The trace id of `span` (default: the current one) as X-Ray writes it:
    ``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy``; None outside a recorded trace."""
    ctx = (span or trace.get_current_span()).get_span_context()
    if not ctx.is_valid:
        return None
    hexid = format(ctx.trace_id, "032x")
    return f"1-{hexid[:8]}-{hexid[8:]}"
