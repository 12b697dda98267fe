"""Run every case of the table against the real runtime and the emulator (see cases.py)."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import pytest
from cases import CASES, Case, Expect

from sdq_conformance.harness import Inputs, Outcome, Target, unique_id
from sdq_conformance.report import TARGETS, record

_GENERATING = {"generating"}


def _expected_text(expect: Expect) -> str:
    return Outcome(
        expect.status,
        expect.code,
        expect.permanent,
        expect.images,
        (expect.status,),
        files=expect.expected_files() if expect.status == "completed" else (),
    ).short()


def _with_id(case: Case, body: dict[str, Any], task_id: str) -> None:
    if case.api == "/v1alpha1":
        body["alwayson_scripts"]["id_task"] = task_id
        body["alwayson_scripts"]["uid"] = task_id
    else:
        body["task"]["metadata"]["id"] = task_id


def _drive(
    target: Target, case: Case, task_id: str, inputs: Inputs
) -> tuple[dict[str, Any], str | None]:
    """Submit, do the case's action while it generates (with the task behind it claimed, so
    its request waits at the runtime), wait for the end."""
    if case.action is None:
        return target.wait(task_id, _terminal, case.within_s, "finished"), None
    target.wait(task_id, lambda r: r.get("stage") in _GENERATING, case.within_s, "generating")
    behind_id = None
    if case.behind is not None:
        body = case.behind(inputs)
        behind_id = f"{task_id}-behind"
        _with_id(case, body, behind_id)
        target.submit(case.api, body)
        target.wait(behind_id, lambda r: r.get("status") == "running", case.within_s, "claimed")
    if case.action == "cancel":
        target.cancel(task_id)
    else:
        target.control.crash(case.runtime)
        target.control.restart(case.runtime)
    return target.wait(task_id, _terminal, case.within_s, "finished"), behind_id


def _terminal(record: dict[str, Any]) -> bool:
    return record.get("status") in ("completed", "failed", "cancelled")


@pytest.mark.timeout(900)  # a real runtime generates, crashes and restarts within one case
@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(
    case: Case, target_name: str, targets: dict[str, Target], inputs: dict[str, Inputs]
) -> None:
    target = targets[target_name]
    expected = _expected_text(case.expect)
    task_id = unique_id(case.id, target_name)
    started = time.monotonic()
    try:
        body = case.body(inputs[target_name])
        _with_id(case, body, task_id)
        if target_name == "emulator" and case.emulator_knobs:
            target.control.set_knobs(case.runtime, case.emulator_knobs)
        files_before = target.files(case.runtime)
        target.submit(case.api, body)
        final, behind_id = _drive(target, case, task_id, inputs[target_name])
        outcome = target.outcome(task_id, final, time.monotonic() - started)
        if case.runtime == "comfyui":
            leftover = target.files(case.runtime) - files_before
            outcome = dataclasses.replace(outcome, leftover_files=len(leftover))
    except BaseException as exc:
        record(case.id, target_name, expected, f"error: {type(exc).__name__}: {str(exc)[:120]}")
        raise
    record(case.id, target_name, expected, outcome)
    _check(target_name, outcome, case.expect)
    if behind_id is not None and case.behind_expect is not None:
        final = target.wait(behind_id, _terminal, case.within_s, "finished")
        behind = target.outcome(behind_id, final, time.monotonic() - started)
        _check(f"{target_name}, the task behind", behind, case.behind_expect)


def _check(target_name: str, outcome: Outcome, want: Expect) -> None:
    assert (outcome.status, outcome.code, outcome.permanent) == (
        want.status,
        want.code,
        want.permanent,
    ), f"[{target_name}] {outcome}"
    assert outcome.images == want.images, f"[{target_name}] {outcome}"
    assert outcome.notifications == (want.status,), (
        f"[{target_name}] expected one {want.status} notification: {outcome}"
    )
    for word in want.message:
        assert re.search(re.escape(word), outcome.message, re.IGNORECASE), (
            f"[{target_name}] the failure message should name {word!r}: {outcome.message!r}"
        )
    if want.status == "completed":
        # The notification's output_url is the task's .out object (the seed guide's form).
        assert outcome.output_url == "out", f"[{target_name}] output_url: {outcome}"
        # Each output's metadata agrees with its S3 object and between row and notification,
        # and the outputs are the kinds, types and sizes the case expects.
        assert outcome.file_problems == (), f"[{target_name}] {outcome.file_problems}"
        assert sorted(outcome.files, key=str) == sorted(want.expected_files(), key=str), (
            f"[{target_name}] files: {outcome.files}"
        )
    assert outcome.texts == want.texts, f"[{target_name}] text outputs: {outcome.texts}"
    if outcome.leftover_files is not None:
        assert outcome.leftover_files == 0, (
            f"[{target_name}] the task's files stay on the ComfyUI server: {outcome}"
        )
