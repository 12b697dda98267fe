"""OpenTelemetry for the agent: X-Ray ids and propagation, aiobotocore calls traced, spans
exported over OTLP (the ADOT collector) and/or as JSON lines to a directory (the local stack)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.aiobotocore import AioBotocoreInstrumentor
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

SERVICE_NAME = "sdq-queue-agent"


def _one_line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json(indent=None)), separators=(",", ":")) + "\n"


def configure_tracing(
    *, otlp_endpoint: str | None, trace_dir: str | None, runtime_name: str
) -> TracerProvider | None:
    """Install the global tracer provider when spans have somewhere to go; else tracing stays
    a no-op (the OpenTelemetry API's default) and costs nothing."""
    propagate.set_global_textmap(AwsXRayPropagator())
    if not otlp_endpoint and not trace_dir:
        return None
    provider = TracerProvider(
        id_generator=AwsXRayIdGenerator(),
        resource=Resource.create({"service.name": SERVICE_NAME, "sdq.runtime": runtime_name}),
    )
    if otlp_endpoint:
        # Imported only when exporting over OTLP.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if trace_dir:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        # One file per process, open for its lifetime: writers never interleave.
        out = Path(trace_dir, f"{SERVICE_NAME}-{os.getpid()}.jsonl").open("a", encoding="utf-8")  # noqa: SIM115
        # Written as each span ends, so `sdq trace` sees a task's spans as soon as it is done.
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line))
        )
    trace.set_tracer_provider(provider)
    AioBotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider
