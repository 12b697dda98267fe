"""The metrics port on Prometheus: one agent's own registry, served on /metrics."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class PrometheusMetrics:
    """Implements :class:`sdq_queue_agent.domain.ports.Metrics`."""

    def __init__(self, runtime: str) -> None:
        self.registry = CollectorRegistry()
        self._started = time.monotonic()
        self._busy_seconds = 0.0
        labels = {"runtime": runtime}
        self.tasks = Counter(
            "sdq_agent_tasks",
            "Tasks finished by outcome (completed, failed, retried, cancelled, skipped, "
            "released, poison)",
            ["runtime", "outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "sdq_agent_stage_seconds",
            "Duration of each task stage (prepare, fetch, generate, upload, notify)",
            ["runtime", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.receive_seconds = Histogram(
            "sdq_agent_receive_seconds",
            "Latency of one SQS receive call (long polls included)",
            ["runtime"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.queue_wait_seconds = Histogram(
            "sdq_agent_queue_wait_seconds",
            "Submit-to-receive time of tasks",
            ["runtime"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.in_flight = Gauge(
            "sdq_agent_in_flight", "Messages held by the agent", ["runtime"], registry=self.registry
        ).labels(**labels)
        self.runtime_busy_seconds = Counter(
            "sdq_agent_runtime_busy_seconds",
            "Seconds the runtime spent on generation requests",
            ["runtime"],
            registry=self.registry,
        ).labels(**labels)
        busy_ratio = Gauge(
            "sdq_agent_runtime_busy_ratio",
            "Runtime busy seconds / agent uptime (GPU duty cycle)",
            ["runtime"],
            registry=self.registry,
        ).labels(**labels)
        busy_ratio.set_function(self.busy_ratio)
        self._runtime = runtime

    def outcome(self, outcome: str) -> None:
        self.tasks.labels(runtime=self._runtime, outcome=outcome).inc()

    def stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(runtime=self._runtime, stage=stage).observe(seconds)

    def busy(self, seconds: float) -> None:
        self._busy_seconds += seconds
        self.runtime_busy_seconds.inc(seconds)

    def busy_ratio(self) -> float:
        uptime = time.monotonic() - self._started
        return self._busy_seconds / uptime if uptime > 0 else 0.0
