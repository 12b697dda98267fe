"""The API's tracer (OpenTelemetry API only: the provider and exports are set up by
sdq_observability in the composition root); trace ids in X-Ray form come from the shared lib."""

from __future__ import annotations

from opentelemetry import trace

from sdq_observability.xray import xray_trace_id

tracer = trace.get_tracer("sdq.api")

__all__ = ["tracer", "xray_trace_id"]
