"""sdq queue-agent benchmark (``make bench``): GPU duty cycle, AWS calls and their cost per task,
agent CPU and memory, and whether the agent or the emulator limited the run.

Per scenario: moto behind a keep-alive front (``sdq_bench.moto_front``), the counting and
delaying proxy in front of it (``sdq_bench.proxy``: every AWS call of the agent pays
``--aws-latency-ms`` and is counted by service and operation), the runtime emulator with a fixed
generation time and image size, the sdq resources provisioned from a generated config, then the
agent (any command line, ``--agent-cmd``) fed tasks progressively (``--depth`` visible messages
ahead of it, so moto's O(queue depth) receive stays cheap) until every task is announced.

On a machine with two or more cores the agent gets the first core and everything else
(moto, proxy, runtime emulator, this process) the others, so the agent is measured alone.

    python -m sdq_bench.agent                 # default scenarios, a table
    python -m sdq_bench.agent --repeat 3      # three consecutive runs of each scenario
    python -m sdq_bench.agent --json          # one JSON object per scenario and run
    python -m sdq_bench.agent --gen-s 0.2 --tasks 50 --agent-cmd "python -m other_agent"
    python -m sdq_bench.agent --runtime-type invokeai   # the agent's InvokeAI adapter

Duty cycle = generation time / wall time while the tasks last, both read from the emulator's
log (first generation start to last generation end): the GPU's view, where any per-task work
left in series with generation shows up. ``duty_cycle_e2e`` divides by the whole run instead
(agent ready to the last notification), so pipeline fill and drain (``fill_drain_s``) count too.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer

from sdq_bench.calls import (
    PRICES_READ_ON,
    calls_by_service,
    cost_per_1000,
    verdict,
)
from sdq_bench.machine import CoreSplit, core_busy, cpu_seconds, pin_tree, proc_stats, split_cores
from sdq_contracts.config import DeploymentConfig, parse_config
from sdq_contracts.keys import output_location
from sdq_contracts.messages import ATTR_RUNTIME, StatusRecord, TaskMessage, TaskState
from sdq_local.provision import Provisioned, observe_topic, provision
from sdq_runtime_emulator.harness import free_port

REGION = "us-west-2"
RUNTIME = "bench"
MODEL = "v1-5-pruned-emaonly.safetensors"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
STATS = "/__bench/stats"


@dataclass(frozen=True)
class Scenario:
    gen_s: float
    image_px: int
    aws_latency_ms: float
    tasks: int
    # The emulated API the agent drives (sdwebui: one blocking POST; invokeai: its queue).
    runtime_type: str = "sdwebui"
    # visible messages kept ahead of the agent
    depth: int = 20
    # "keepalive": moto behind sdq_bench.moto_front; "werkzeug": moto_server as shipped
    moto: str = "keepalive"


@dataclass(frozen=True)
class Result:
    agent: str
    gen_s: float
    image_px: int
    aws_latency_ms: float
    tasks: int
    run: int
    duty_cycle: float
    duty_cycle_e2e: float
    fill_drain_s: float
    throughput_per_s: float
    overhead_ms_per_task: float
    p50_s: float
    p95_s: float
    rss_mb: float
    cpu_ms_per_task: float
    wall_s: float
    # AWS calls the agent made after it was ready, per task
    calls_per_task: float
    calls_by_service: dict[str, float]
    calls_by_operation: dict[str, float]
    startup_calls: int
    aws_errors: dict[str, int]
    cost_per_1000_usd: float
    prices_read_on: str
    # connections: the agent's to the proxy (whole run, startup included), the proxy's to moto,
    # moto's accepted (every client)
    agent_connections: int
    upstream_connections: int
    moto_connections: int
    # CPU shares of one core during the run (agent ready → every message deleted)
    agent_cpu_share: float
    moto_cpu_share: float
    proxy_cpu_share: float
    runtime_emulator_cpu_share: float
    bench_cpu_share: float
    moto_cpu_ms_per_task: float
    # moto's CPU ms per call by operation during the run (every client: agent, feeder, observer)
    moto_cpu_ms_by_operation: dict[str, float]
    emulator_side_share: float  # of the emulator side's cores
    foreign_share: float  # of the agent's core (pinned) or the machine, taken by other processes
    foreign_emulator_share: float  # of the emulator side's cores, taken by other processes
    pinned: str
    min_depth: int
    starved_receives: int
    empty_receives: int
    bottleneck: str
    meets_goals: bool
    verdict: str
    moto_server: str = "keepalive"


# ---------------------------------------------------------------------------- processes


def wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - 127.0.0.1 only
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise TimeoutError(f"{what} not answering on {url} after {attempts} attempts")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - 127.0.0.1 only
        return json.loads(resp.read())


@contextlib.contextmanager
def process(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cores: frozenset[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    if cores is not None:
        pin_tree(proc.pid, cores)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# ---------------------------------------------------------------------------- scenario


def bench_config(runtime_type: str = "sdwebui") -> DeploymentConfig:
    return parse_config(
        {
            "stack_name": "bench",
            "region": REGION,
            "buckets": {"models": "bench-models", "outputs": "bench-outputs"},
            "runtimes": [
                {
                    "name": RUNTIME,
                    "type": runtime_type,
                    "model": MODEL,
                    "task_timeout_seconds": 60,
                    "max_receive_count": 3,
                }
            ],
        }
    )


class Feeder:
    """Submits tasks (status row + SNS publish, straight to moto: not counted as the agent's)
    so that ``depth`` messages stay visible ahead of the agent: shallow, but never empty while
    tasks remain. How many the agent received comes from the proxy's counters."""

    def __init__(
        self, prov: Provisioned, endpoint: str, stats_url: str, scenario: Scenario
    ) -> None:
        self.prov = prov
        self.stats_url = stats_url
        self.scenario = scenario
        self.ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        self.sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint)
        self.serializer = TypeSerializer()
        self.submitted = 0
        self.min_depth: int | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def submit(self, count: int) -> None:
        """Submit up to ``count`` more tasks, ten per call (moto's cost is the emulator side's)."""
        count = min(count, self.scenario.tasks - self.submitted)
        while count > 0:
            batch = [self._task(i) for i in range(self.submitted, self.submitted + min(10, count))]
            self.ddb.batch_write_item(
                RequestItems={
                    self.prov.status_table: [{"PutRequest": {"Item": item}} for _, item in batch]
                }
            )
            self.sns.publish_batch(
                TopicArn=self.prov.input_topic_arn,
                PublishBatchRequestEntries=[
                    {
                        "Id": str(n),
                        "Message": task.model_dump_json(exclude_none=True),
                        "MessageAttributes": {
                            ATTR_RUNTIME: {"DataType": "String", "StringValue": RUNTIME}
                        },
                    }
                    for n, (task, _) in enumerate(batch)
                ],
            )
            self.submitted += len(batch)
            count -= len(batch)

    def _task(self, i: int) -> tuple[TaskMessage, dict[str, Any]]:
        """Task ``i`` and its queued status row."""
        px = self.scenario.image_px
        task = TaskMessage(
            id=f"bench-{i:05d}",
            runtime=RUNTIME,
            tasktype="text-to-image",
            prefix="bench",
            content={"prompt": "benchmark", "width": px, "height": px, "steps": 1},
        )
        record = StatusRecord(
            id=task.id,
            runtime=RUNTIME,
            tasktype=task.tasktype,
            status=TaskState.QUEUED,
            output_location=output_location(self.prov.output_bucket, "bench", task.id),
        )
        return task, {k: self.serializer.serialize(v) for k, v in record.to_item().items()}

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Each look costs the emulator side a stats request: look as often as the agent can use
        # an eighth of the depth (0.25 s at 0.1 s/image; it was every 25 ms, 40 requests/s).
        interval = max(0.01, min(0.25, self.scenario.gen_s * self.scenario.depth / 8))
        try:
            while self.submitted < self.scenario.tasks and not self._stop.is_set():
                received = get_json(self.stats_url)["messages_received"]
                depth = self.submitted - received
                # how close the agent came to an empty queue while tasks remained to feed
                self.min_depth = depth if self.min_depth is None else min(self.min_depth, depth)
                self.submit(self.scenario.depth - depth)
                self._stop.wait(interval)
        except BaseException as exc:  # reported by the benchmark, not lost in a thread
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def observer_queue(prov: Provisioned, endpoint: str) -> str:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint)
    return observe_topic(sqs, sns, prov.output_topic_arn, "bench-observer")


COLLECT_PACE_S = 0.2


def collect(
    endpoint: str, url: str, expect: int, timeout: float, feeder: Feeder | None = None
) -> list[tuple[dict[str, Any], float]]:
    """(notification, sent epoch seconds) until ``expect`` arrived."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    seen: list[tuple[dict[str, Any], float]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < expect:
        if feeder is not None and feeder.error is not None:
            raise RuntimeError(f"the feeder failed: {feeder.error!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {expect} notifications after {timeout:.0f} s")
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["SentTimestamp"],
        )
        messages = resp.get("Messages", [])
        for msg in messages:
            seen.append((json.loads(msg["Body"]), int(msg["Attributes"]["SentTimestamp"]) / 1000))
        if messages:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        if 0 < len(messages) < 10 and len(seen) < expect:
            # A receive answers as soon as one notification is there: up to a receive and a
            # delete per task, twice the agent's own receives. Times are SNS's send stamps, so
            # reading them tenths of a second later changes no measurement.
            time.sleep(COLLECT_PACE_S)
    return seen


def settle(endpoint: str, queue_url: str, within_s: float) -> None:
    """Wait (bounded) until the agent deleted every message: batched deletes count too."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if (
            int(attrs["ApproximateNumberOfMessages"])
            + int(attrs["ApproximateNumberOfMessagesNotVisible"])
            == 0
        ):
            return
        time.sleep(0.05)


def generation_spans(emulator_log: Path, api: str = "sdwebui") -> list[tuple[float, float]]:
    """(start, end) epoch seconds of every generation of ``api``, from the emulator's INFO log."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for line in emulator_log.read_text(errors="replace").splitlines():
        if f" {api} " not in line:
            continue
        stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
        if " started (fault=" in line:
            start = stamp
        elif start is not None and line.rstrip().endswith(("completed", "interrupted", "failed")):
            spans.append((start, stamp))
            start = None
    return spans


@dataclass
class Sample:
    """CPU seconds of every process of the run, per-core busy seconds, and the proxy's counters,
    at one moment."""

    at: float
    cpu: dict[str, float]
    cores: dict[int, float]
    proxy: dict[str, Any]
    moto: dict[str, Any]


def sample(pids: dict[str, int], stats_url: str, moto_stats_url: str | None) -> Sample:
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu["bench"] = time.process_time()
    moto = get_json(moto_stats_url) if moto_stats_url else {}
    return Sample(time.time(), cpu, core_busy(), get_json(stats_url), moto)


def agent_env(
    prov: Provisioned, *, scenario: Scenario, emu_url: str, aws_url: str, port: int, workdir: Path
) -> dict[str, str]:
    return dict(os.environ) | {
        "SDQ_RUNTIME_NAME": RUNTIME,
        "SDQ_RUNTIME_TYPE": scenario.runtime_type,
        "SDQ_RUNTIME_URL": emu_url,
        "SDQ_STATIC_MODEL": MODEL,
        "SDQ_DYNAMIC_MODEL": "false",
        "SDQ_QUEUE_URL": prov.queue_urls[RUNTIME],
        "SDQ_RESULT_TOPIC_ARN": prov.output_topic_arn,
        "SDQ_STATUS_TABLE": prov.status_table,
        "SDQ_OUTPUT_BUCKET": prov.output_bucket,
        "SDQ_MODEL_BUCKET": prov.model_bucket,
        "SDQ_TASK_TIMEOUT_SECONDS": "60",
        "SDQ_MAX_RECEIVE_COUNT": "3",
        "SDQ_HTTP_PORT": str(port),
        "SDQ_DRAIN_FILE": str(workdir / "drained"),
        "SDQ_URL_ALLOWLIST": "127.0.0.1/32",
        "AWS_ENDPOINT_URL": aws_url,
    }


def moto_argv(kind: str, port: int) -> list[str]:
    py = sys.executable
    if kind == "werkzeug":
        # moto's own werkzeug server (moto.server.main), DynamoDB isolated like every moto we run
        return [py, "-m", "sdq_local.aws_emulator", "-H", "127.0.0.1", "-p", str(port)]
    return [py, "-m", "sdq_bench.moto_front", "-H", "127.0.0.1", "-p", str(port)]


def emulator_argv(scenario: Scenario, port: int) -> list[str]:
    px = str(scenario.image_px)
    return [
        sys.executable, "-m", "sdq_runtime_emulator", "--host", "127.0.0.1", "--port", str(port),
        "--generation-latency-s", str(scenario.gen_s), "--default-width", px,
        "--default-height", px, "--log-level", "INFO",
    ]  # fmt: skip


def run_scenario(  # noqa: PLR0917 - one run of one agent in one scenario
    scenario: Scenario,
    agent_cmd: list[str],
    workdir: Path,
    split: CoreSplit,
    run: int = 1,
    label: str = "sdq",
) -> Result:
    moto_port, proxy_port, emu_port, agent_port = (free_port() for _ in range(4))
    moto_url = f"http://127.0.0.1:{moto_port}"
    aws_url = f"http://127.0.0.1:{proxy_port}"
    emu_url = f"http://127.0.0.1:{emu_port}"
    emu_cores = split.emulator
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(
            process(
                moto_argv(scenario.moto, moto_port),
                workdir / "moto.log",
                dict(os.environ) | {"MOTO_PORT": str(moto_port)},
                emu_cores,
            )
        )
        wait_http(f"{moto_url}/moto-api/", 30, "moto server")
        proxy_cmd = [
            sys.executable, "-m", "sdq_bench.proxy", "--port", str(proxy_port),
            "--target", moto_url, "--delay-ms", str(scenario.aws_latency_ms),
            "--expect", str(scenario.tasks),
        ]  # fmt: skip
        proxy = stack.enter_context(process(proxy_cmd, workdir / "proxy.log", None, emu_cores))
        wait_http(f"{aws_url}{STATS}", 30, "counting proxy")
        emulator = stack.enter_context(
            process(emulator_argv(scenario, emu_port), workdir / "emulator.log", None, emu_cores)
        )
        wait_http(f"{emu_url}/emulator/knobs", 30, "runtime emulator")

        prov = provision(bench_config(scenario.runtime_type), endpoint_url=moto_url)
        observer = observer_queue(prov, moto_url)
        feeder = Feeder(prov, moto_url, f"{aws_url}{STATS}", scenario)
        feeder.submit(scenario.depth)  # the first `depth` tasks wait before the agent starts

        env = agent_env(
            prov,
            scenario=scenario,
            emu_url=emu_url,
            aws_url=aws_url,
            port=agent_port,
            workdir=workdir,
        )
        agent = stack.enter_context(process(agent_cmd, workdir / "agent.log", env, split.agent))
        ready_at = wait_ready(f"http://127.0.0.1:{agent_port}/readyz", agent, 60)
        if split.agent is not None:
            pin_tree(agent.pid, split.agent)  # threads and children started since
        pids = {"agent": agent.pid, "moto": moto.pid, "proxy": proxy.pid, "emulator": emulator.pid}
        moto_stats_url = f"{moto_url}{STATS}" if scenario.moto == "keepalive" else None
        before = sample(pids, f"{aws_url}{STATS}", moto_stats_url)
        feeder.start()
        try:
            notes = collect(
                moto_url,
                observer,
                scenario.tasks,
                timeout=120 + scenario.tasks * scenario.gen_s * 3,
                feeder=feeder,
            )
        finally:
            feeder.stop()
        settle(moto_url, prov.queue_urls[RUNTIME], within_s=10)
        after = sample(pids, f"{aws_url}{STATS}", moto_stats_url)
        rss_mb, _ = proc_stats(agent.pid)
    spans = generation_spans(workdir / "emulator.log", scenario.runtime_type)
    fed_up_front = min(scenario.depth, scenario.tasks)
    return summarize(
        scenario,
        run,
        label=label,
        split=split,
        notes=notes,
        spans=spans,
        ready_at=ready_at,
        before=before,
        after=after,
        rss_mb=rss_mb,
        min_depth=fed_up_front if feeder.min_depth is None else feeder.min_depth,
    )


def summarize(
    scenario: Scenario,
    run: int,
    *,
    label: str,
    split: CoreSplit,
    notes: list[tuple[dict[str, Any], float]],
    spans: list[tuple[float, float]],
    ready_at: float,
    before: Sample,
    after: Sample,
    rss_mb: float,
    min_depth: int,
) -> Result:
    n = scenario.tasks
    completed = len(spans)
    failed = [note for note, _ in notes if note.get("status") != "completed"]
    if failed or completed < n:
        raise RuntimeError(f"{len(failed)} failed notifications, {completed} generations completed")
    busy = sum(end - start for start, end in spans)
    window = spans[-1][1] - spans[0][0]
    wall = max(sent for _, sent in notes) - ready_at
    span_s = after.at - before.at
    cpu = {k: after.cpu[k] - before.cpu.get(k, 0.0) for k in after.cpu}
    share = {k: round(v / span_s, 3) for k, v in cpu.items()}
    counts = call_delta(before.proxy["calls"], after.proxy["calls"])
    total_calls = sum(c for c, _, _ in counts.values())
    emulator_side, foreign, foreign_emulator = cpu_picture(split, cpu, before, after)
    duty = busy / window
    starved = after.proxy["starved_receives"] - before.proxy["starved_receives"]
    if foreign_emulator > foreign:
        worst_foreign, scope = foreign_emulator, "the emulator side's core"
    else:
        worst_foreign, scope = foreign, "the agent's core" if split.pinned else "the machine"
    judged = verdict(
        gen_s=scenario.gen_s,
        duty_cycle=duty,
        calls_per_task=total_calls / n,
        emulator_share=emulator_side,
        foreign_share=worst_foreign,
        starved_receives=starved,
        foreign_scope=scope,
    )
    errors = {
        k: v - before.proxy["errors"].get(k, 0)
        for k, v in after.proxy["errors"].items()
        if v - before.proxy["errors"].get(k, 0)
    }
    latencies = sorted(sent - submitted_at(note, ready_at) for note, sent in notes)
    return Result(
        agent=label,
        gen_s=scenario.gen_s,
        image_px=scenario.image_px,
        aws_latency_ms=scenario.aws_latency_ms,
        tasks=n,
        run=run,
        duty_cycle=round(duty, 4),
        duty_cycle_e2e=round(busy / wall, 4),
        fill_drain_s=round(wall - window, 3),
        throughput_per_s=round(n / wall, 3),
        overhead_ms_per_task=round((window - busy) / n * 1000, 1),
        p50_s=round(statistics.median(latencies), 3),
        p95_s=round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
        rss_mb=round(rss_mb, 1),
        cpu_ms_per_task=round(cpu["agent"] / n * 1000, 1),
        wall_s=round(wall, 2),
        calls_per_task=round(total_calls / n, 2),
        calls_by_service={k: round(v / n, 2) for k, v in calls_by_service(counts).items()},
        calls_by_operation={k: round(c / n, 2) for k, (c, _, _) in sorted(counts.items())},
        startup_calls=sum(c for c, _, _ in before.proxy["calls"].values()),
        aws_errors=errors,
        cost_per_1000_usd=round(cost_per_1000(counts, n), 5),
        prices_read_on=PRICES_READ_ON,
        agent_connections=after.proxy["agent_connections"],
        upstream_connections=after.proxy["upstream_connections"],
        moto_connections=after.moto.get("connections", -1),
        agent_cpu_share=share["agent"],
        moto_cpu_share=share["moto"],
        proxy_cpu_share=share["proxy"],
        runtime_emulator_cpu_share=share["emulator"],
        bench_cpu_share=share["bench"],
        moto_cpu_ms_per_task=round(cpu["moto"] / n * 1000, 1),
        moto_cpu_ms_by_operation=moto_ms_per_call(before.moto, after.moto),
        emulator_side_share=round(emulator_side, 3),
        foreign_share=round(foreign, 3),
        foreign_emulator_share=round(foreign_emulator, 3),
        pinned=(
            f"agent {sorted(split.agent)} / emulator side {sorted(split.emulator or [])}"
            if split.agent
            else "no"
        ),
        min_depth=min_depth,
        starved_receives=starved,
        empty_receives=after.proxy["empty_receives"] - before.proxy["empty_receives"],
        bottleneck=judged.bottleneck,
        meets_goals=judged.meets_goals,
        verdict=judged.line,
        moto_server=scenario.moto,
    )


def cpu_picture(
    split: CoreSplit, cpu: dict[str, float], before: Sample, after: Sample
) -> tuple[float, float, float]:
    """(emulator side's CPU share of its cores, share of the agent's core taken by processes
    outside the benchmark, the same on the emulator side's cores). Unpinned: the emulator side
    against the cores the agent leaves, and foreign load against the whole machine (twice)."""
    span_s = after.at - before.at
    side = cpu["moto"] + cpu["proxy"] + cpu["emulator"] + cpu["bench"]

    def busy(cores: frozenset[int]) -> float:
        return sum(after.cores.get(c, 0) - before.cores.get(c, 0) for c in cores)

    if split.emulator and split.agent:
        return (
            side / span_s / len(split.emulator),
            max(0.0, busy(split.agent) - cpu["agent"]) / span_s / len(split.agent),
            max(0.0, busy(split.emulator) - side) / span_s / len(split.emulator),
        )
    ncores = os.cpu_count() or 1
    emulator_side = max(
        cpu["moto"] / span_s, cpu["proxy"] / span_s, side / span_s / max(1, ncores - 1)
    )
    machine_busy = sum(after.cores.values()) - sum(before.cores.values())
    foreign = max(0.0, machine_busy - sum(cpu.values())) / span_s / ncores
    return emulator_side, foreign, foreign


def call_delta(
    before: dict[str, list[Any]], after: dict[str, list[Any]]
) -> dict[str, tuple[int, float, str | None]]:
    """The proxy's per-operation counters accrued between two snapshots."""
    out: dict[str, tuple[int, float, str | None]] = {}
    for name, (calls, units, key) in after.items():
        prev = before.get(name, [0, 0.0, key])
        if calls - prev[0]:
            out[name] = (calls - prev[0], units - prev[1], key)
    return out


def moto_ms_per_call(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """moto's CPU ms per call of every operation between two snapshots of its stats."""
    out: dict[str, float] = {}
    for name, (calls, ms) in after.get("cpu_ms", {}).items():
        prev_calls, prev_ms = before.get("cpu_ms", {}).get(name, (0, 0.0))
        if calls > prev_calls:
            out[name] = round((ms - prev_ms) / (calls - prev_calls), 2)
    return out


def submitted_at(note: dict[str, Any], default: float) -> float:
    stamp = note.get("submitted_at")
    if not stamp:
        return default
    return TaskMessage.model_validate(
        {"id": "x", "runtime": "x", "tasktype": "text-to-image", "content": {},
         "submitted_at": stamp}
    ).submitted_at.timestamp()  # fmt: skip


def wait_ready(url: str, agent: subprocess.Popen[bytes], timeout: float) -> float:
    """Epoch seconds at which the agent first answered /readyz with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - 127.0.0.1 only
                if resp.status == 200:
                    return time.time()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.01)
    raise TimeoutError("agent never became ready")


# ---------------------------------------------------------------------------- CLI

SERVICES = ("sqs", "dynamodb", "sns", "s3")
COLUMNS = (
    f"{'agent':<8} {'gen_s':>5} {'px':>4} {'ms':>3} {'tasks':>5} {'run':>3} {'duty':>6} {'e2e':>6} "
    f"{'calls':>5} {'sqs':>4} {'ddb':>4} {'sns':>4} {'s3':>4} {'$/1k':>7} {'cpu_ms':>6} "
    f"{'rss_mb':>6} {'moto%':>5} {'emu%':>5} {'frgn%':>5} {'conns':>5}"
)


def table_row(r: Result) -> str:
    by = [r.calls_by_service.get(s, 0.0) for s in SERVICES]
    return (
        f"{r.agent[:8]:<8} {r.gen_s:>5.2f} {r.image_px:>4} {r.aws_latency_ms:>3.0f} {r.tasks:>5} {r.run:>3} "
        f"{r.duty_cycle:>6.3f} {r.duty_cycle_e2e:>6.3f} {r.calls_per_task:>5.2f} "
        + " ".join(f"{v:>4.2f}" for v in by)
        + f" {r.cost_per_1000_usd:>7.4f} {r.cpu_ms_per_task:>6.1f} {r.rss_mb:>6.1f} "
        f"{r.moto_cpu_share * 100:>5.0f} {r.emulator_side_share * 100:>5.0f} "
        f"{r.foreign_share * 100:>5.0f} {r.agent_connections:>5}"
    )


def print_table(results: list[Result]) -> None:
    print(COLUMNS)
    print("-" * len(COLUMNS))
    for r in results:
        print(table_row(r))
        ops = ", ".join(f"{k} {v:g}" for k, v in r.calls_by_operation.items())
        print(f"      calls/task: {ops}")
        print(
            f"      moto {r.moto_cpu_ms_per_task:.0f} ms CPU/task, proxy {r.proxy_cpu_share:.0%}, "
            f"runtime emulator {r.runtime_emulator_cpu_share:.0%}, bench {r.bench_cpu_share:.0%}; "
            f"connections: moto {r.moto_connections}, proxy->moto {r.upstream_connections}; "
            f"min depth {r.min_depth}, empty receives {r.empty_receives}; "
            f"other load on the emulator side {r.foreign_emulator_share:.0%}"
            + (f"; AWS errors {r.aws_errors}" if r.aws_errors else "")
        )
        costly = sorted(r.moto_cpu_ms_by_operation.items(), key=lambda kv: -kv[1])[:5]
        if costly:
            print("      moto ms/call: " + ", ".join(f"{k} {v:.1f}" for k, v in costly))
        print(f"      verdict: {r.verdict}")
    if results:
        print(
            f"(pinned: {results[0].pinned}; AWS list prices read {PRICES_READ_ON}, "
            "see sdq_bench.calls.PRICES_USD)"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    cli = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_argument("--gen-s", type=float, action="append", help="generation seconds (repeatable)")
    cli.add_argument("--image-px", type=int, default=512)
    cli.add_argument("--aws-latency-ms", type=float, default=20.0)
    cli.add_argument(
        "--tasks", type=int, default=None, help="tasks (default: ~20 s of generation, 20..200)"
    )
    cli.add_argument(
        "--depth", type=int, default=20, help="visible messages kept ahead of the agent"
    )
    cli.add_argument("--repeat", type=int, default=1, help="consecutive runs of every scenario")
    cli.add_argument(
        "--agent-cmd", default=None, help="the agent's command line (default: this sdq agent)"
    )
    cli.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="LABEL=CMD",
        help="an agent to compare (repeatable): every scenario and run goes through each in turn",
    )
    cli.add_argument("--json", action="store_true", help="one JSON object per scenario and run")
    cli.add_argument(
        "--runtime-type", choices=("sdwebui", "invokeai"), default="sdwebui", help="emulated API"
    )
    cli.add_argument(
        "--moto-server",
        choices=("keepalive", "werkzeug"),
        default="keepalive",
        help="moto behind the keep-alive front (default) or moto_server as shipped",
    )
    cli.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    cli.add_argument("--keep-logs", action="store_true", help="keep process logs and print where")
    cli.add_argument(
        "--render",
        type=Path,
        metavar="JSONL",
        help="print the table of earlier --json output (one object per line) and exit",
    )
    return cli.parse_args(argv)


def agent_commands(labelled: list[str], agent_cmd: str | None) -> list[tuple[str, str]]:
    """(label, command line) of every agent to run: ``--agent LABEL=CMD`` values, then
    ``--agent-cmd`` (label "agent"); this sdq agent when neither is given."""
    agents = []
    for value in labelled:
        label, sep, cmd = value.partition("=")
        if not sep or not label or not cmd:
            raise SystemExit(f"--agent takes LABEL=CMD, got {value!r}")
        agents.append((label, cmd))
    if agent_cmd:
        agents.append(("agent", agent_cmd))
    return agents or [("sdq", f"{shlex.quote(sys.executable)} -m sdq_queue_agent")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        lines = args.render.read_text().splitlines()
        print_table([Result(**json.loads(line)) for line in lines if line.strip()])
        return 0
    for key, value in AWS_ENV.items():  # moto accepts any credentials; never use real ones here
        os.environ[key] = value
    split = split_cores(os.sched_getaffinity(0), enabled=not args.no_pin)
    if split.emulator is not None:
        os.sched_setaffinity(0, split.emulator)  # this process feeds and observes: emulator side
    agents = agent_commands(args.agent, args.agent_cmd)
    results = []
    for run, gen_s, (label, cmd) in itertools.product(
        range(1, args.repeat + 1), args.gen_s or [0.5, 0.1], agents
    ):
        tasks = args.tasks or max(20, min(200, round(20 / gen_s)))
        scenario = Scenario(
            gen_s, args.image_px, args.aws_latency_ms, tasks, args.runtime_type,
            args.depth, args.moto_server,
        )  # fmt: skip
        workdir = Path(tempfile.mkdtemp(prefix="sdq-bench-"))
        result = run_scenario(scenario, shlex.split(cmd), workdir, split, run, label)
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result)), flush=True)
        else:
            print(f"run {run}, {label}, {gen_s} s/image: {result.verdict}", file=sys.stderr)
        if args.keep_logs:
            print(f"logs: {workdir}", file=sys.stderr)
        else:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()
    if not args.json:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
