"""What the benchmark reads from Linux and how it splits the machine, and the counter deltas."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sdq_bench.agent import (
    Result,
    Sample,
    agent_commands,
    call_delta,
    cpu_picture,
    main,
    moto_ms_per_call,
)
from sdq_bench.machine import TICKS, core_busy, cpu_seconds, descendants, pin_tree, split_cores

pytestmark = pytest.mark.unit

STAT = """cpu  300 0 100 1000 50 0 0 0 0 0
cpu0 100 0 50 600 20 0 10 0 0 0
cpu1 200 0 50 400 30 0 0 5 0 0
intr 1 2 3
"""


def test_core_busy_is_everything_but_idle_and_iowait():
    busy = core_busy(STAT)
    assert busy == {0: pytest.approx(160 / TICKS), 1: pytest.approx(255 / TICKS)}


def test_the_agent_gets_one_core_and_the_emulator_side_the_rest():
    split = split_cores([3, 1, 2])
    assert (split.agent, split.emulator, split.pinned) == (frozenset({1}), frozenset({2, 3}), True)
    assert not split_cores([0]).pinned
    assert not split_cores([0, 1], enabled=False).pinned


def test_this_process_is_found_and_measured():
    assert os.getpid() in descendants(os.getpid())
    assert cpu_seconds(os.getpid()) > 0
    assert cpu_seconds(2**22 + 7) == 0.0  # no such process


def test_call_delta_keeps_only_calls_made_between_snapshots():
    before = {"sqs:ReceiveMessage": [3, 3.0, "sqs_request"], "sqs:GetQueueUrl": [1, 1.0, "x"]}
    after = {
        "sqs:ReceiveMessage": [13, 13.0, "sqs_request"],
        "sqs:GetQueueUrl": [1, 1.0, "x"],
        "sns:Publish": [10, 10.0, "sns_request"],
    }
    assert call_delta(before, after) == {
        "sqs:ReceiveMessage": (10, 10.0, "sqs_request"),
        "sns:Publish": (10, 10.0, "sns_request"),
    }


def test_moto_cost_per_call_is_taken_over_the_run_only():
    before = {"cpu_ms": {"dynamodb:CreateTable": [1, 250.0], "dynamodb:UpdateItem": [2, 20.0]}}
    after = {"cpu_ms": {"dynamodb:CreateTable": [1, 250.0], "dynamodb:UpdateItem": [12, 70.0]}}
    assert moto_ms_per_call(before, after) == {"dynamodb:UpdateItem": 5.0}


def test_agents_to_compare_are_labelled_and_default_to_this_agent():
    assert agent_commands(["old=env A=1 python -m x", "new=python -m y"], None) == [
        ("old", "env A=1 python -m x"),
        ("new", "python -m y"),
    ]
    assert agent_commands([], "python other.py") == [("agent", "python other.py")]
    label, cmd = agent_commands([], None)[0]
    assert (label, cmd.endswith("-m sdq_queue_agent")) == ("sdq", True)
    with pytest.raises(SystemExit, match="LABEL=CMD"):
        agent_commands(["no-label"], None)


def test_pin_tree_pins_a_child_and_its_threads():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable core: nothing to pin apart")
    core = min(os.sched_getaffinity(0))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        pin_tree(child.pid, {core})
        assert os.sched_getaffinity(child.pid) == {core}
        assert descendants(child.pid)[0] == child.pid
    finally:
        child.communicate(b"", timeout=30)


def test_json_results_render_as_the_table(tmp_path, capsys):
    fields = dict.fromkeys(Result.__dataclass_fields__, 0)
    row = fields | {
        "agent": "before",
        "calls_by_service": {"sqs": 2.0, "dynamodb": 5.0},
        "calls_by_operation": {"sqs:ReceiveMessage": 1.0},
        "moto_cpu_ms_by_operation": {"dynamodb:UpdateItem": 9.5},
        "aws_errors": {},
        "pinned": "no",
        "verdict": "agent-bound; goals met",
        "cost_per_1000_usd": 0.0144,
        "duty_cycle": 0.981,
    }
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(row) + "\n")
    assert main(["--render", str(results)]) == 0
    out = capsys.readouterr().out
    assert "before" in out and "0.981" in out and "0.0144" in out
    assert "verdict: agent-bound; goals met" in out
    assert "dynamodb:UpdateItem 9.5" in out


def test_cpu_picture_separates_the_benchmarks_cpu_from_other_load():
    before = Sample(100.0, {}, {0: 50.0, 1: 70.0}, {}, {})
    cpu = {"agent": 2.0, "moto": 3.0, "proxy": 1.0, "emulator": 0.5, "bench": 0.5}
    # ten seconds: the agent's core was busy 10 s (2 s the agent's), the other 9 s (5 s ours)
    after = Sample(110.0, {}, {0: 60.0, 1: 79.0}, {}, {})
    side, foreign, foreign_emulator = cpu_picture(split_cores([0, 1]), cpu, before, after)
    assert (side, foreign, foreign_emulator) == pytest.approx((0.5, 0.8, 0.4))
    side, foreign, _ = cpu_picture(split_cores([0, 1], enabled=False), cpu, before, after)
    # unpinned: the emulator side against the core the agent leaves; other load machine-wide
    ncores = os.cpu_count() or 1
    assert (side, foreign) == pytest.approx((max(0.3, 0.5 / max(1, ncores - 1)), 1.2 / ncores))
