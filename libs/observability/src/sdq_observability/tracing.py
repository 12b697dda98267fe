"""OpenTelemetry for every sdq service: X-Ray trace ids and propagation; spans exported over
OTLP (the ADOT collector, in a pod or as a Lambda layer) and/or as JSON lines to a directory
(the local stack's `sdq trace`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

XRAY_HEADER = "X-Amzn-Trace-Id"
# Exports already added to this process's provider (a warm Lambda, or a test, configures again).
_exports: dict[str, IO[str] | None] = {}


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector endpoint, as the OpenTelemetry spec derives it
    from ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``http://host:4318`` → ``http://host:4318/v1/traces``)."""
    return f"{endpoint.rstrip('/')}/v1/traces"


def _one_line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json(indent=None)), separators=(",", ":")) + "\n"


def configure_tracing(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    trace_dir: str | None = None,
    resource: Mapping[str, str] | None = None,
    record_without_export: bool = False,
) -> TracerProvider | None:
    """Install (or reuse) the process's tracer provider and add each export once.

    The X-Ray propagator is always installed (incoming ``X-Amzn-Trace-Id`` headers are read).
    Without an export, no provider is installed and tracing stays the API's free no-op, unless
    ``record_without_export`` asks for spans with X-Ray ids anyway (the API records the trace id
    on the status row, so the agent can continue it). Returns the provider (flush it with
    ``shutdown()`` before exit), or None when tracing is a no-op."""
    propagate.set_global_textmap(AwsXRayPropagator())
    if not (otlp_endpoint or trace_dir or record_without_export):
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(
            id_generator=AwsXRayIdGenerator(),
            resource=Resource.create({"service.name": service_name, **(resource or {})}),
        )
        trace.set_tracer_provider(provider)
    if otlp_endpoint and "otlp" not in _exports:
        # Imported only when exporting over OTLP: keeps a Lambda's cold start lean otherwise.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _exports["otlp"] = None
    if trace_dir and trace_dir not in _exports:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        # One file per process, open for its lifetime: writers never interleave.
        out = Path(trace_dir, f"{service_name}-{os.getpid()}.jsonl").open("a", encoding="utf-8")  # noqa: SIM115
        # Written as each span ends, so `sdq trace` sees a task's spans as soon as it is done.
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line))
        )
        _exports[trace_dir] = out
    return provider


@contextmanager
def continued_trace(header: str | None) -> Iterator[None]:
    """Make the trace in an X-Ray header (Lambda's ``_X_AMZN_TRACE_ID`` with active tracing)
    the current context for the block; a missing or malformed header changes nothing. Reads the
    header with the X-Ray propagator itself, so it works before the global one is installed
    (a Lambda's first invocation builds its app, and configures tracing, inside the block)."""
    token = context.attach(AwsXRayPropagator().extract({XRAY_HEADER: header})) if header else None
    try:
        yield
    finally:
        if token is not None:
            context.detach(token)
