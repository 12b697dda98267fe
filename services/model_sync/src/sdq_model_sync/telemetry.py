"""OpenTelemetry for the model_sync Lambda: X-Ray ids and propagation; spans go over OTLP to the
collector extension (the ADOT Lambda layer) when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE_NAME = "sdq-model-sync"


def configure(otlp_endpoint: str | None) -> TracerProvider | None:
    """Install the tracer provider when spans have somewhere to go (else tracing is a no-op)."""
    propagate.set_global_textmap(AwsXRayPropagator())
    if not otlp_endpoint or isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    # Imported only when exporting: keeps the cold start lean otherwise.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    provider = TracerProvider(
        id_generator=AwsXRayIdGenerator(),
        resource=Resource.create({"service.name": SERVICE_NAME}),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
