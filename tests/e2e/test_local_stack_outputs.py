"""Every ComfyUI output kind through the local stack and the runtime emulator: one workflow that
saves an animation, images, two videos, audio and text ends as S3 objects whose status-row and
notification metadata match what the objects are (audio is emulator-only: the real CPU build of
ComfyUI v0.8.0 the conformance suite runs has no audio nodes)."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest

from sdq_cli.api import ApiClient
from sdq_cli.follow import Tracked, follow
from sdq_conformance.files import FileFacts, check
from sdq_contracts import load_config
from sdq_contracts.keys import parse_s3_uri
from sdq_contracts.messages import ResultNotification
from sdq_local.stack import LOCAL_CREDENTIALS, LocalStack, StackOptions
from sdq_runtime_emulator import workflows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack

CAPTION = "every kind"


def every_kind() -> dict[str, Any]:
    """Frames (nodes 1, 2, 11, 12) saved as an animated WebP (3) and PNGs (4), an MP4 (20 → 21)
    and a WebM (22); silent audio as FLAC (30 → 31); a string as text (40 → 41)."""
    graph = workflows.animation_and_image(width=48, height=32, frame_count=3, filename_prefix="all")
    video = workflows.video(width=48, height=32, frame_count=3, filename_prefix="all")
    audio = workflows.audio(duration=0.25, filename_prefix="all")
    text = workflows.text(CAPTION)
    return graph | {
        "20": video["3"],
        "21": {**video["4"], "inputs": {**video["4"]["inputs"], "video": ["20", 0]}},
        "22": video["5"],
        "30": audio["1"],
        "31": {**audio["2"], "inputs": {**audio["2"]["inputs"], "audio": ["30", 0]}},
        "40": text["1"],
        "41": {**text["2"], "inputs": {"source": ["40", 0]}},
    }


@pytest.fixture
async def stack(repo_root, tmp_path):
    cfg = load_config(repo_root / "config.yaml")
    local = LocalStack(cfg, StackOptions(state_dir=tmp_path / "state", emulator_latency_s=0.1))
    info = await local.start()
    try:
        yield info
    finally:
        await local.stop()


async def test_every_output_kind_is_stored_and_described(stack):
    info = stack
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=info.region,
    )
    s3 = session.client("s3", endpoint_url=info.aws_endpoint)
    sqs = session.client("sqs", endpoint_url=info.aws_endpoint)
    api = ApiClient(info.api_url, info.api_key)
    body = {
        "task": {
            "metadata": {"id": "every-kind", "runtime": "comfyui", "tasktype": "pipeline"},
            "content": every_kind(),
        }
    }
    accepted = await asyncio.to_thread(api.submit, "/v1alpha2", body)
    task = Tracked(accepted["id_task"], accepted["runtime"])
    await asyncio.to_thread(follow, api, [task], 120, lambda *_: None)
    [message] = sqs.receive_message(QueueUrl=info.results_queue_url, WaitTimeSeconds=5)["Messages"]
    note = ResultNotification.model_validate_json(message["Body"])

    def read(url: str) -> tuple[bytes, str]:
        bucket, key = parse_s3_uri(url)
        answer = s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer["ContentType"]

    assert task.record["status"] == "completed", task.record
    checked = check(task.record, note.files, read)
    assert checked.problems == ()
    assert sorted(checked.facts, key=str) == sorted(
        [
            FileFacts("animation", "image/webp", 48, 32),
            *[FileFacts("image", "image/png", 48, 32)] * 3,
            FileFacts("video", "video/mp4", 48, 32),
            FileFacts("video", "video/webm", 48, 32),
            FileFacts("audio", "audio/flac"),
            FileFacts("text", "text/plain"),
        ],
        key=str,
    )
    assert checked.texts == (CAPTION,)
