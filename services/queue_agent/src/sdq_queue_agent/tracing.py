"""OpenTelemetry hook: spans per stage come from ``trace.get_tracer``; exporting is switched on
only when OTEL_EXPORTER_OTLP_ENDPOINT is set (X-Ray compatible ids). Full X-Ray wiring is a
later issue."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure_tracing(endpoint: str | None, runtime_name: str) -> TracerProvider | None:
    if not endpoint:
        return None
    provider = TracerProvider(
        id_generator=AwsXRayIdGenerator(),
        resource=Resource.create({"service.name": "sdq-queue-agent", "sdq.runtime": runtime_name}),
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    return provider
