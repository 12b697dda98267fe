"""sdq queue-agent benchmark (``make bench``): GPU duty cycle, throughput and overhead under a backlog.

Per scenario: a moto server in its own process, an optional delaying proxy in front of it (every
AWS call of the agent pays ``--aws-latency-ms``), the runtime emulator with a fixed generation
time and image size, the sdq resources provisioned from a generated config, a backlog of N
tasks, then the agent (any command line, ``--agent-cmd``) until every task is announced.

    python -m sdq_bench.agent                 # default scenarios, a table
    python -m sdq_bench.agent --json          # one JSON object per scenario
    python -m sdq_bench.agent --gen-s 0.2 --tasks 50 --agent-cmd "python -m other_agent"
    python -m sdq_bench.agent --runtime-type invokeai   # the agent's InvokeAI adapter

Duty cycle = generation time / wall time while the backlog lasts, both read from the emulator's
log (first generation start to last generation end): the GPU's view, where any per-task work
left in series with generation shows up. ``duty_cycle_e2e`` divides by the whole run instead
(agent ready to the last notification), so pipeline fill and drain (``fill_drain_s``) count too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from boto3.dynamodb.types import TypeSerializer

from sdq_contracts.config import DeploymentConfig, parse_config
from sdq_contracts.keys import output_location
from sdq_contracts.messages import ATTR_RUNTIME, StatusRecord, TaskMessage, TaskState
from sdq_local.provision import Provisioned, observe_topic, provision
from sdq_runtime_emulator.harness import free_port

REGION = "us-west-2"
RUNTIME = "bench"
MODEL = "v1-5-pruned-emaonly.safetensors"
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
)
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass(frozen=True)
class Scenario:
    gen_s: float
    image_px: int
    aws_latency_ms: float
    tasks: int
    # The emulated API the agent drives (sdwebui: one blocking POST; invokeai: its queue).
    runtime_type: str = "sdwebui"


@dataclass(frozen=True)
class Result:
    gen_s: float
    image_px: int
    aws_latency_ms: float
    tasks: int
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


@contextlib.contextmanager
def process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
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


def proc_stats(pid: int) -> tuple[float, float]:
    """Peak RSS (MB, VmHWM) and CPU seconds (user + system) of a live process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return rss_kb / 1024, cpu


# ---------------------------------------------------------------------------- delaying proxy


def run_proxy(port: int, target: str, delay_ms: float) -> None:
    """Forward every request to ``target`` after ``delay_ms`` (an AWS round trip's latency)."""

    async def main() -> None:
        session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(total=120), auto_decompress=False
        )

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            await asyncio.sleep(delay_ms / 1000)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
            async with session.request(
                request.method,
                target + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                out_headers = {
                    k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS
                }
                return web.Response(status=resp.status, body=payload, headers=out_headers)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        await session.close()

    asyncio.run(main())


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


def submit_backlog(prov: Provisioned, endpoint: str, scenario: Scenario) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint)
    serializer = TypeSerializer()
    for i in range(scenario.tasks):
        task = TaskMessage(
            id=f"bench-{i:05d}",
            runtime=RUNTIME,
            tasktype="text-to-image",
            prefix="bench",
            content={
                "prompt": "benchmark",
                "width": scenario.image_px,
                "height": scenario.image_px,
                "steps": 1,
            },
        )
        record = StatusRecord(
            id=task.id,
            runtime=RUNTIME,
            tasktype=task.tasktype,
            status=TaskState.QUEUED,
            output_location=output_location(prov.output_bucket, "bench", task.id),
        )
        ddb.put_item(
            TableName=prov.status_table,
            Item={k: serializer.serialize(v) for k, v in record.to_item().items()},
        )
        sns.publish(
            TopicArn=prov.input_topic_arn,
            Message=task.model_dump_json(exclude_none=True),
            MessageAttributes={ATTR_RUNTIME: {"DataType": "String", "StringValue": RUNTIME}},
        )


def observer_queue(prov: Provisioned, endpoint: str) -> str:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint)
    return observe_topic(sqs, sns, prov.output_topic_arn, "bench-observer")


def collect(
    endpoint: str, url: str, expect: int, timeout: float
) -> list[tuple[dict[str, Any], float]]:
    """(notification, sent epoch seconds) until ``expect`` arrived."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    seen: list[tuple[dict[str, Any], float]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < expect:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {expect} notifications after {timeout:.0f} s")
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["SentTimestamp"],
        )
        for msg in resp.get("Messages", []):
            seen.append((json.loads(msg["Body"]), int(msg["Attributes"]["SentTimestamp"]) / 1000))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    return seen


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


def run_scenario(scenario: Scenario, agent_cmd: list[str], workdir: Path) -> Result:
    moto_port, emu_port, agent_port = free_port(), free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    emu_url = f"http://127.0.0.1:{emu_port}"
    base_env = dict(os.environ)
    py = sys.executable
    with contextlib.ExitStack() as stack:
        moto_bin = str(Path(py).with_name("moto_server"))
        stack.enter_context(
            process([moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)], workdir / "moto.log")
        )
        wait_http(f"{moto_url}/moto-api/", 30, "moto server")
        aws_url = moto_url
        if scenario.aws_latency_ms > 0:
            proxy_port = free_port()
            stack.enter_context(
                process(
                    [
                        py,
                        __file__,
                        "--proxy",
                        str(proxy_port),
                        moto_url,
                        str(scenario.aws_latency_ms),
                    ],
                    workdir / "proxy.log",
                )
            )
            aws_url = f"http://127.0.0.1:{proxy_port}"
            wait_http(f"{aws_url}/moto-api/", 30, "delaying proxy")
        stack.enter_context(
            process(
                [
                    py,
                    "-m",
                    "sdq_runtime_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(emu_port),
                    "--generation-latency-s",
                    str(scenario.gen_s),
                    "--default-width",
                    str(scenario.image_px),
                    "--default-height",
                    str(scenario.image_px),
                    "--log-level",
                    "INFO",
                ],
                workdir / "emulator.log",
            )
        )
        wait_http(f"{emu_url}/emulator/knobs", 30, "runtime emulator")

        prov = provision(bench_config(scenario.runtime_type), endpoint_url=moto_url)
        observer = observer_queue(prov, moto_url)
        submit_backlog(prov, moto_url, scenario)

        agent_env = base_env | {
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
            "SDQ_HTTP_PORT": str(agent_port),
            "SDQ_DRAIN_FILE": str(workdir / "drained"),
            "SDQ_URL_ALLOWLIST": "127.0.0.1/32",
            "AWS_ENDPOINT_URL": aws_url,
        }
        agent = stack.enter_context(process(agent_cmd, workdir / "agent.log", agent_env))
        ready_at = wait_ready(f"http://127.0.0.1:{agent_port}/readyz", agent, 60)
        _, cpu_at_ready = proc_stats(agent.pid)
        notes = collect(
            moto_url, observer, scenario.tasks, timeout=120 + scenario.tasks * scenario.gen_s * 3
        )
        rss_mb, cpu_s = proc_stats(agent.pid)
        cpu_s -= cpu_at_ready

    spans = generation_spans(workdir / "emulator.log", scenario.runtime_type)
    completed = len(spans)
    busy = sum(end - start for start, end in spans)
    window = spans[-1][1] - spans[0][0] if spans else float("nan")
    last = max(sent for _, sent in notes)
    wall = last - ready_at
    latencies = sorted(
        sent
        - TaskMessage.model_validate(
            {
                "id": "x",
                "runtime": "x",
                "tasktype": "text-to-image",
                "content": {},
                "submitted_at": note.get("submitted_at"),
            }
        ).submitted_at.timestamp()
        if note.get("submitted_at")
        else sent - ready_at
        for note, sent in notes
    )
    failed = [n for n, _ in notes if n.get("status") != "completed"]
    if failed or completed < scenario.tasks:
        raise RuntimeError(f"{len(failed)} failed notifications, {completed} generations completed")
    return Result(
        gen_s=scenario.gen_s,
        image_px=scenario.image_px,
        aws_latency_ms=scenario.aws_latency_ms,
        tasks=scenario.tasks,
        duty_cycle=round(busy / window, 4),
        duty_cycle_e2e=round(busy / wall, 4),
        fill_drain_s=round(wall - window, 3),
        throughput_per_s=round(scenario.tasks / wall, 3),
        overhead_ms_per_task=round((window - busy) / scenario.tasks * 1000, 1),
        p50_s=round(statistics.median(latencies), 3),
        p95_s=round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
        rss_mb=round(rss_mb, 1),
        cpu_ms_per_task=round(cpu_s / scenario.tasks * 1000, 1),
        wall_s=round(wall, 2),
    )


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


def print_table(results: list[Result]) -> None:
    header = (
        f"{'gen_s':>6} {'px':>5} {'aws_ms':>6} {'tasks':>5} {'duty':>6} {'e2e':>6} {'fill_s':>6} {'thr/s':>6} "
        f"{'ovh_ms':>7} {'p50_s':>7} {'p95_s':>7} {'rss_mb':>7} {'cpu_ms':>7} {'wall_s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.gen_s:>6.2f} {r.image_px:>5} {r.aws_latency_ms:>6.0f} {r.tasks:>5} {r.duty_cycle:>6.3f} "
            f"{r.duty_cycle_e2e:>6.3f} {r.fill_drain_s:>6.2f} "
            f"{r.throughput_per_s:>6.2f} {r.overhead_ms_per_task:>7.1f} {r.p50_s:>7.2f} {r.p95_s:>7.2f} "
            f"{r.rss_mb:>7.1f} {r.cpu_ms_per_task:>7.1f} {r.wall_s:>7.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--proxy"]:
        _, port, target, delay = args_list
        run_proxy(int(port), target, float(delay))
        return 0
    cli = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_argument("--gen-s", type=float, action="append", help="generation seconds (repeatable)")
    cli.add_argument("--image-px", type=int, default=512)
    cli.add_argument("--aws-latency-ms", type=float, default=20.0)
    cli.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="backlog size (default: ~20 s of generation, 20..200 tasks)",
    )
    cli.add_argument("--agent-cmd", default=f"{shlex.quote(sys.executable)} -m sdq_queue_agent")
    cli.add_argument("--json", action="store_true", help="one JSON object per scenario")
    cli.add_argument(
        "--runtime-type", choices=("sdwebui", "invokeai"), default="sdwebui", help="emulated API"
    )
    cli.add_argument("--keep-logs", action="store_true", help="keep process logs and print where")
    args = cli.parse_args(args_list)
    for key, value in AWS_ENV.items():  # moto accepts any credentials; never use real ones here
        os.environ[key] = value
    results = []
    for gen_s in args.gen_s or [0.5, 0.1]:
        tasks = args.tasks or max(20, min(200, round(20 / gen_s)))
        scenario = Scenario(gen_s, args.image_px, args.aws_latency_ms, tasks, args.runtime_type)
        workdir = Path(tempfile.mkdtemp(prefix="sdq-bench-"))
        result = run_scenario(scenario, shlex.split(args.agent_cmd), workdir)
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result)), flush=True)
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
