"""The local stack with an InvokeAI runtime (emulated): SD WebUI-style text-to-image and a raw
InvokeAI graph through the HTTP API end as images in S3 and completed notifications."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from PIL import Image

from sdq_cli.api import ApiClient
from sdq_cli.follow import Tracked, download, follow
from sdq_cli.target import Target
from sdq_contracts import parse_config
from sdq_local.stack import LOCAL_CREDENTIALS, LocalStack, StackOptions

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack

CONFIG: dict[str, Any] = {
    "stack_name": "sdq",
    "region": "us-west-2",
    "buckets": {"models": "sdq-models-example", "outputs": "sdq-outputs-example"},
    "runtimes": [
        {"name": "invokeai", "type": "invokeai", "model": "v1-5-pruned-emaonly.safetensors"},
    ],
}


@pytest.fixture
async def stack(tmp_path):
    local = LocalStack(
        parse_config(CONFIG), StackOptions(state_dir=tmp_path / "state", emulator_latency_s=0.2)
    )
    info = await local.start()
    try:
        yield info
    finally:
        await local.stop()


async def test_invokeai_tasks_end_to_end(stack, repo_root, tmp_path):
    info = stack
    api = ApiClient(info.api_url, info.api_key)
    target = Target(
        api_url=info.api_url,
        api_key=info.api_key,
        region=info.region,
        aws_endpoint=info.aws_endpoint,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    t2i = {
        "task": {
            "metadata": {"id": "inv-t2i", "runtime": "invokeai", "tasktype": "text-to-image"},
            "content": {"prompt": "a red fox", "width": 256, "height": 128, "batch_size": 2},
        }
    }
    graph = json.loads((repo_root / "tests/examples/v1alpha2-invokeai-graph.json").read_text())
    tracked = []
    for body in (t2i, graph):
        accepted = await asyncio.to_thread(api.submit, "/v1alpha2", body)
        tracked.append(Tracked(accepted["id_task"], accepted["runtime"]))
    await asyncio.to_thread(follow, api, tracked, 60, lambda *_: None)
    sizes = {}
    for task in tracked:
        files = await asyncio.to_thread(download, target, task, tmp_path / task.task_id)
        sizes[task.task_id] = [Image.open(io.BytesIO(f.read_bytes())).size for f in files]
    assert sizes == {"inv-t2i": [(256, 128), (256, 128)], "example-invokeai-graph": [(512, 512)]}
    for task in tracked:
        record = await asyncio.to_thread(api.status, task.task_id)
        assert record["status"] == "completed", record
