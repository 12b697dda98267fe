"""Logs and traces, set up the same way in every sdq service.

- :mod:`sdq_observability.logs`: structlog JSON lines, level parsing, secret scrubbing.
- :mod:`sdq_observability.tracing`: the OpenTelemetry tracer provider (X-Ray ids and
  propagation) with OTLP and/or JSON-lines export, and continuing a Lambda's trace.
- :mod:`sdq_observability.xray`: trace ids in X-Ray form (OpenTelemetry API only, so a pure
  domain may import it).
"""
