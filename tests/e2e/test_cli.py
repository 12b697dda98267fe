"""The sdq CLI against the local stack: every command, and the error paths with their exit codes
and messages."""

from __future__ import annotations

import io
import json
import stat
import time
import urllib.request

import boto3
import pytest
from PIL import Image

from sdq_cli import local
from sdq_cli.errors import Exit
from sdq_cli.main import main
from sdq_queue_agent.settings import AgentSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # starts and stops the local stack


@pytest.fixture(scope="module")
def stack(repo_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("cli-stack")
    info, started = local.up(state, str(repo_root / "config.yaml"), 0.3, [])
    assert started
    try:
        yield state, info
    finally:
        assert local.down(state)
        assert local.running(state) is None


@pytest.fixture
def sdq(stack, capsys, tmp_path):
    state, _ = stack

    def run(*argv: str, profile: bool = True) -> tuple[int, str, str]:
        args = list(argv)
        if profile:
            args += ["--profile", str(state / local.STACK_FILE)]
        code = main(args)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as fh, Image.open(io.BytesIO(fh.read())) as img:
        return img.size


def _set_latency(info, runtime: str, seconds: float) -> None:
    url = info["runtimes"][runtime] + "/emulator/knobs"
    body = json.dumps({"generation_latency_s": seconds}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):  # loopback emulator
        pass


def _notifications(info, ids: set[str], timeout: float = 20.0) -> list[dict]:
    """Every result notification for ``ids`` on the stack's results queue: waits until each id
    has one, then one more poll so a duplicate would show."""
    sqs = boto3.client(
        "sqs",
        region_name=info["region"],
        endpoint_url=info["aws_endpoint"],
        aws_access_key_id=info["aws_access_key_id"],
        aws_secret_access_key=info["aws_secret_access_key"],
    )
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    extra = False
    while time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=info["results_queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for msg in got:
            body = json.loads(msg["Body"])
            body = json.loads(body["Message"]) if "Message" in body else body
            if body.get("id") in ids:
                seen.append(body)
        if ids <= {n["id"] for n in seen} and not got:
            if extra:
                break
            extra = True
    return seen


def test_local_up_is_idempotent_and_status_reports_it(stack, repo_root):
    state, info = stack
    again, started = local.up(state, str(repo_root / "config.yaml"), 0.3, [])
    assert not started
    assert again["api_url"] == info["api_url"]
    # stack.json holds the API key: readable by its owner only
    assert stat.S_IMODE((state / local.STACK_FILE).stat().st_mode) == 0o600


def test_submit_and_wait_for_every_task_type(sdq, repo_root, tmp_path):
    image = tmp_path / "in.png"
    Image.new("RGB", (96, 64), (10, 200, 30)).save(image)
    out = str(tmp_path / "out")
    cases = [
        (["--prompt", "a red fox", "--width", "256", "--height", "192"], (256, 192)),
        (
            ["--prompt", "fox in snow", "--image", str(image), "--width", "128", "--height", "128"],
            (128, 128),
        ),
        (["--image", str(image), "--upscale", "2"], (192, 128)),
        (["--image", str(image), "--image", str(image), "--upscale", "2"], (192, 128)),
        (["--workflow", str(repo_root / "tests/examples/comfyui-txt2img-api.json")], (512, 512)),
        # a local input file reaches ComfyUI's LoadImage (uploaded by the agent)
        (
            [
                "--workflow",
                str(repo_root / "tests/examples/comfyui-invert-api.json"),
                "--image",
                str(image),
            ],
            (96, 64),
        ),
    ]
    for flags, size in cases:
        code, stdout, stderr = sdq("submit", *flags, "--wait", "--out", out, "--timeout", "60")
        assert code == Exit.OK, stderr
        files = stdout.split()
        assert files, stderr
        assert all(_png_size(f) == size for f in files)
        assert "→ completed" in stderr.splitlines()[-1]


def test_submit_a_request_file_prints_the_id_then_status_and_logs(sdq, repo_root):
    code, stdout, _ = sdq(
        "submit", "--file", str(repo_root / "tests/examples/v1alpha1-text-to-image.json")
    )
    assert (code, stdout.strip()) == (Exit.OK, "example-v1-t2i")
    code, _, _ = sdq(
        "submit",
        "--file",
        str(repo_root / "tests/examples/v1alpha2-text-to-image.json"),
        "--id",
        "cli-file-1",
        "--wait",
        "--timeout",
        "60",
    )
    assert code == Exit.OK
    code, stdout, _ = sdq("status", "cli-file-1", "--json")
    record = json.loads(stdout)
    assert (code, record["status"], record["runtime"]) == (Exit.OK, "completed", "sdruntime")
    code, stdout, _ = sdq("status", "cli-file-1")
    assert "cli-file-1: completed" in stdout and "output " in stdout
    code, stdout, _ = sdq("logs", "cli-file-1")
    assert code == Exit.OK
    lines = stdout.strip().splitlines()
    assert len(lines) >= 3
    assert all("cli-file-1" not in line.split()[0] for line in lines)  # the id is not the timestamp
    assert any("queue-agent-sdruntime" in line for line in lines)


def test_trace_prints_the_tree_of_the_task(sdq):
    code, _, _ = sdq(
        "submit", "--prompt", "traced", "--id", "cli-traced", "--wait", "--timeout", "60"
    )
    assert code == Exit.OK
    code, stdout, _ = sdq("trace", "cli-traced")
    assert code == Exit.OK
    assert stdout.startswith("trace 1-")
    assert "POST /v1alpha2" in stdout
    assert "sdq-queue-agent" in stdout


def test_cancel_a_queued_a_prefetched_and_a_generating_task(sdq, stack):
    _, info = stack
    _set_latency(info, "sdruntime", 10.0)
    # The agent holds one generating task and prefetches SDQ_PREFETCH more; the next one stays
    # in the queue.
    held = AgentSettings.model_fields["prefetch"].default + 1
    ids = [f"cli-slow-{n}" for n in range(1, held + 2)]
    try:
        for task_id in ids:
            assert sdq("submit", "--prompt", "slow", "--id", task_id)[0] == Exit.OK
        for _ in range(100):  # until the first one generates (bounded: 10 s)
            if json.loads(sdq("status", ids[0], "--json")[1])["status"] == "running":
                break
            time.sleep(0.1)
        # Still in the queue: cancelled at once.
        code, stdout, _ = sdq("cancel", ids[-1], "--json")
        assert (code, json.loads(stdout)["status"]) == (Exit.OK, "cancelled")
        # Held by the agent (generating, or prefetched): asked to stop, the agent ends it.
        for task_id in ids[:-1]:
            code, stdout, _ = sdq("cancel", task_id, "--json")
            record = json.loads(stdout)
            assert code == Exit.OK
            assert record["status"] == "cancelled" or record["cancel_requested"] is True
        for task_id in ids:
            for _ in range(150):  # bounded: 15 s, well under the 10 s generation x 2
                state = json.loads(sdq("status", task_id, "--json")[1])["status"]
                if state != "running":
                    break
                time.sleep(0.1)
            assert state == "cancelled", task_id
        code, _, _ = sdq("cancel", ids[0])
        assert code == Exit.OK  # cancelling again is harmless
        # every task ends with exactly one notification, cancelled-while-queued included
        notes = _notifications(info, set(ids))
        assert sorted((n["id"], n["status"]) for n in notes) == [
            (task_id, "cancelled") for task_id in sorted(ids)
        ]
    finally:
        _set_latency(info, "sdruntime", 0.3)


def test_error_paths_have_exit_codes_and_clear_messages(sdq, repo_root, tmp_path, stack):
    _, info = stack
    code, _, err = sdq("submit", "--prompt", "x", "--api-key", "wrong-key")
    assert code == Exit.AUTH and "refused the key" in err

    keyless = tmp_path / "keyless.json"
    keyless.write_text(json.dumps({"api_url": info["api_url"]}))
    code, _, err = sdq("status", "any", "--profile", str(keyless), profile=False)
    assert code == Exit.AUTH and "needs a key" in err and "--api-key" in err

    code, _, err = sdq("submit", "--prompt", "x", "--runtime", "nope")
    assert code == Exit.REFUSED and "unknown runtime 'nope'" in err

    bad_workflow = tmp_path / "wf.json"
    bad_workflow.write_text('{"1": {"inputs": {}}}')
    code, _, err = sdq("submit", "--workflow", str(bad_workflow))
    assert code == Exit.USAGE and "has no class_type" in err
    bad_workflow.write_text("{not json")
    code, _, err = sdq("submit", "--workflow", str(bad_workflow))
    assert code == Exit.USAGE and "not valid JSON" in err

    code, _, err = sdq("submit", "--image", str(tmp_path / "missing.png"))
    assert code == Exit.USAGE and "input image not found" in err

    code, _, err = sdq("status", "no-such-task")
    assert code == Exit.REFUSED and "no task with id" in err

    code, _, err = sdq(
        "submit",
        "--prompt",
        "x",
        "--runtime",
        "sdruntime",
        "--endpoint",
        "http://127.0.0.1:9",
        profile=False,
    )
    assert code == Exit.UNREACHABLE and "cannot reach sdq" in err

    _set_latency(info, "sdruntime", 2.0)
    try:
        code, _, err = sdq("submit", "--prompt", "x", "--wait", "--timeout", "0.5")
        assert code == Exit.TIMEOUT and "gave up after" in err
    finally:
        _set_latency(info, "sdruntime", 0.3)
