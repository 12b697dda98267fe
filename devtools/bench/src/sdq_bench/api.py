"""Benchmark of the api_validator handler: cold import time and first-request time in a fresh
interpreter, and warm p50/p99 latency of submit and status against a moto server.

    python -m sdq_bench.api [--requests 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from sdq_api_validator.app import build_api
from sdq_api_validator.settings import load_settings
from sdq_contracts import load_config
from sdq_contracts.config import runtimes_env
from sdq_local.processes import ManagedProcess, python_module
from sdq_local.provision import provision
from sdq_local.stack import HOST, LOCAL_CREDENTIALS
from sdq_observability.logs import configure_logging
from sdq_runtime_emulator.harness import free_port

REPO_ROOT = Path(__file__).resolve().parents[4]

_COLD_PROBE = """
import json, os, sys, time
t0 = time.perf_counter()
from sdq_api_validator import handler
t1 = time.perf_counter()
event = json.loads(sys.stdin.read())
result = handler.handle(event, None)
t2 = time.perf_counter()
assert result["statusCode"] == 202, result
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_request_ms": (t2 - t1) * 1000}))
"""


def _event(body: dict[str, Any], method: str = "POST", path: str = "/v1alpha2") -> dict[str, Any]:
    resource, params = path, None
    if path.startswith("/v1alpha2/tasks/"):
        resource, params = "/v1alpha2/tasks/{id}", {"id": path.rsplit("/", 1)[1]}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "Host": "bench.local"},
        "pathParameters": params,
        "requestContext": {"requestId": "bench", "stage": "bench", "domainName": "bench.local"},
        "body": json.dumps(body) if method == "POST" else None,
        "isBase64Encoded": False,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(requests: int, cold_runs: int) -> dict[str, Any]:
    configure_logging("WARNING")  # one info line per request would dominate the measurement
    cfg = load_config(REPO_ROOT / "config.yaml")
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    moto = ManagedProcess(
        "aws-emulator",
        python_module("moto.server", "-H", HOST, "-p", str(port)),
        Path(".local/logs/bench-moto.log"),
        ready_url=f"{endpoint}/moto-api/data.json",
    )
    moto.start()
    try:

        async def ready() -> None:
            async with aiohttp.ClientSession() as http:
                await moto.wait_ready(30, http)

        asyncio.run(ready())
        os.environ.update(LOCAL_CREDENTIALS | {"AWS_DEFAULT_REGION": cfg.region})
        res = provision(cfg, endpoint_url=endpoint)
        env = {
            "SDQ_RUNTIMES": runtimes_env(cfg.runtimes),
            "SDQ_INPUT_TOPIC_ARN": res.input_topic_arn,
            "SDQ_STATUS_TABLE": res.status_table,
            "SDQ_OUTPUT_BUCKET": res.output_bucket,
            "AWS_ENDPOINT_URL": endpoint,
            "SDQ_LOG_LEVEL": "WARNING",
        }
        body = json.loads((REPO_ROOT / "tests/examples/v1alpha2-text-to-image.json").read_text())

        cold = []
        for i in range(cold_runs):
            b = copy.deepcopy(body)
            b["task"]["metadata"]["id"] = f"cold-{i}"
            out = subprocess.run(  # noqa: S603 - our own interpreter and probe
                [sys.executable, "-c", _COLD_PROBE],
                input=json.dumps(_event(b)),
                capture_output=True,
                text=True,
                env={**os.environ, **env},
                check=True,
                timeout=60,
            )
            cold.append(json.loads(out.stdout.strip().splitlines()[-1]))

        api = build_api(load_settings(env), endpoint_url=endpoint)
        submit, status = [], []
        for i in range(requests):
            b = copy.deepcopy(body)
            b["task"]["metadata"]["id"] = f"warm-{i}"
            t0 = time.perf_counter()
            result = api.handle(_event(b))
            submit.append((time.perf_counter() - t0) * 1000)
            if result["statusCode"] != 202:
                raise RuntimeError(f"submit failed: {result}")
            t0 = time.perf_counter()
            api.handle(_event({}, "GET", f"/v1alpha2/tasks/warm-{i}"))
            status.append((time.perf_counter() - t0) * 1000)
    finally:
        moto.stop()
    return {
        "scenario": "api_validator",
        "cold_import_ms": statistics.median(c["import_ms"] for c in cold),
        "cold_first_request_ms": statistics.median(c["first_request_ms"] for c in cold),
        "requests": requests,
        "submit_p50_ms": _percentile(submit, 0.50),
        "submit_p99_ms": _percentile(submit, 0.99),
        "status_p50_ms": _percentile(status, 0.50),
        "status_p99_ms": _percentile(status, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.requests, args.cold_runs)
    if args.json:
        print(json.dumps(result))
        return 0
    print("api_validator handler (moto server on 127.0.0.1, no injected latency)")
    print(
        f"  cold import            {result['cold_import_ms']:8.1f} ms  (median of {args.cold_runs})"
    )
    print(
        f"  cold first request     {result['cold_first_request_ms']:8.1f} ms  (clients created lazily)"
    )
    print(
        f"  warm submit  p50 / p99 {result['submit_p50_ms']:8.1f} / {result['submit_p99_ms']:.1f} ms  ({result['requests']} requests)"
    )
    print(
        f"  warm status  p50 / p99 {result['status_p50_ms']:8.1f} / {result['status_p99_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
