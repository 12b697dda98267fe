"""pytest fixtures shared by every package's tests (loaded with ``-p sdq_testing.pytest_plugin``).

- ``aws_endpoint`` (session): a moto server on 127.0.0.1 on a free port, started once, prepared
  as every moto server sdq runs (``sdq_moto.prepare_moto_server``: DynamoDB requests one at a
  time, since moto's DynamoDB is not thread-safe and the server is; failed transactions rolled
  back by item; per-request lookups kept). When
  ``SDQ_TEST_AWS_ENDPOINT_URL`` is set (LocalStack, a real account), that endpoint is used
  instead and nothing is reset.
- ``aws`` (function): the endpoint with state reset and the AWS_* environment pointing at it,
  so code under test reaches AWS only through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry import propagate, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TEST_REGION = "us-west-2"


@dataclass(frozen=True)
class AwsTarget:
    endpoint_url: str
    region: str
    emulated: bool

    def reset(self) -> None:
        if self.emulated:
            request = urllib.request.Request(  # noqa: S310 - loopback moto server only
                f"{self.endpoint_url}/moto-api/reset", method="POST"
            )
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                pass

    def env(self) -> dict[str, str]:
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }
        if self.emulated:
            env |= {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
            }
        return env


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[AwsTarget]:
    external = os.environ.get("SDQ_TEST_AWS_ENDPOINT_URL")
    if external:
        yield AwsTarget(external, os.environ.get("AWS_DEFAULT_REGION", TEST_REGION), False)
        return
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only when emulating

    from sdq_moto import prepare_moto_server  # noqa: PLC0415 - only when emulating

    prepare_moto_server()
    # Port 0: the system picks a free port when the server binds (no race with other tests).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    try:
        yield AwsTarget(f"http://127.0.0.1:{port}", TEST_REGION, True)
    finally:
        server.stop()


@pytest.fixture
def aws(aws_endpoint: AwsTarget, monkeypatch: pytest.MonkeyPatch) -> AwsTarget:
    aws_endpoint.reset()
    for key, value in aws_endpoint.env().items():
        monkeypatch.setenv(key, value)
    return aws_endpoint


@pytest.fixture(scope="session")
def _span_memory() -> InMemorySpanExporter:
    """One in-memory exporter on the process's SDK tracer provider (X-Ray ids and propagator,
    as every sdq service configures them)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(id_generator=AwsXRayIdGenerator())
        trace.set_tracer_provider(provider)
    propagate.set_global_textmap(AwsXRayPropagator())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_span_memory: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """Spans finished in this process during the test."""
    _span_memory.clear()
    yield _span_memory
    _span_memory.clear()
