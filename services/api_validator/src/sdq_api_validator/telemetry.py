"""OpenTelemetry for the API Lambda: X-Ray ids and propagation, OTLP and/or JSON-lines export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from opentelemetry import propagate, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

SERVICE_NAME = "sdq-api-validator"
_exports: dict[str, IO[str] | None] = {}


def _one_line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json(indent=None)), separators=(",", ":")) + "\n"


def configure(*, trace_dir: str | None = None, otlp_endpoint: str | None = None) -> TracerProvider:
    """Install (or reuse) the global tracer provider and add each export once. Spans go to OTLP
    (the collector) when an endpoint is set, and to ``<trace_dir>/<service>-<pid>.jsonl`` when a
    directory is set (the local stack)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(
            id_generator=AwsXRayIdGenerator(),
            resource=Resource.create({"service.name": SERVICE_NAME}),
        )
        trace.set_tracer_provider(provider)
        propagate.set_global_textmap(AwsXRayPropagator())
    if otlp_endpoint and "otlp" not in _exports:
        # Imported only when exporting over OTLP: keeps the cold start lean otherwise.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _exports["otlp"] = None
    if trace_dir and trace_dir not in _exports:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        # Kept open for the life of the process; one file per process, so writers never interleave.
        out = Path(trace_dir, f"{SERVICE_NAME}-{os.getpid()}.jsonl").open("a", encoding="utf-8")  # noqa: SIM115
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line))
        )
        _exports[trace_dir] = out
    return provider
