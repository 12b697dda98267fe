"""The worker reports through the metrics port; the Prometheus adapter implements it."""

from __future__ import annotations

import pytest
from agent_fakes import make_harness, task_body
from prometheus_client import generate_latest

from sdq_queue_agent.adapters.prometheus import PrometheusMetrics
from sdq_queue_agent.domain.model import RuntimeRequest
from sdq_queue_agent.domain.ports import Metrics
from sdq_queue_agent.errors import RuntimeRejectedError

pytestmark = pytest.mark.unit


async def test_outcomes_and_stage_times_go_through_the_port() -> None:
    h = make_harness()

    async def reject(_: RuntimeRequest) -> None:
        raise RuntimeRejectedError("HTTP 422: bad sampler")

    h.runtime.behaviours["t2"] = reject
    h.queue.send(task_body("t1"))
    h.queue.send(task_body("t2"))
    await h.burst()
    assert h.metrics.outcomes == {"completed": 1, "failed": 1}
    assert {"prepare", "fetch", "generate", "upload", "notify"} <= set(h.metrics.stages)
    assert len(h.metrics.queue_wait_seconds.values) == 2
    assert h.metrics.in_flight.values[-1] == 0


def test_prometheus_adapter_serves_what_the_port_records() -> None:
    prometheus = PrometheusMetrics("sdruntime")
    metrics: Metrics = prometheus  # the adapter satisfies the port (checked by mypy)
    metrics.outcome("completed")
    metrics.stage("generate", 1.5)
    metrics.busy(1.5)
    metrics.in_flight.set(2)
    text = generate_latest(prometheus.registry).decode()
    assert 'sdq_agent_tasks_total{outcome="completed",runtime="sdruntime"} 1.0' in text
    assert 'sdq_agent_in_flight{runtime="sdruntime"} 2.0' in text
    assert 'sdq_agent_stage_seconds_count{runtime="sdruntime",stage="generate"} 1.0' in text
