"""The suite's results: each case's expected outcome and what the real runtime and the emulator
gave, printed as a table at the end of the pytest run and written as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdq_conformance.harness import Outcome, write_json

TARGETS = ("real", "emulator")
_outcomes: dict[tuple[str, str], Outcome | str] = {}
_expected: dict[str, str] = {}
timings: dict[str, float] = {}


def record(case: str, target: str, expected: str, outcome: Outcome | str) -> None:
    _expected[case] = expected
    _outcomes[(case, target)] = outcome


def _cell(got: Outcome | str | None) -> str:
    if isinstance(got, Outcome):
        return got.short()
    return got or "not run"


def table() -> list[tuple[str, ...]]:
    header = ("case", "expected", *TARGETS)
    rows = [
        (case, want, *(_cell(_outcomes.get((case, t))) for t in TARGETS))
        for case, want in _expected.items()
    ]
    return [header, *rows]


def write(path: Path) -> dict[str, Any]:
    cases = []
    for case, want in _expected.items():
        entry: dict[str, Any] = {"case": case, "expected": want}
        for target in TARGETS:
            got = _outcomes.get((case, target))
            if isinstance(got, Outcome):
                entry[target] = {
                    **got.__dict__,
                    "short": got.short(),
                    "same_as_expected": got.short() == want,
                }
            elif got is not None:
                entry[target] = {"error": got}
        cases.append(entry)
    report = {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "cases": cases}
    write_json(path, report)
    return report


def summary(terminalreporter: Any, path: Path) -> None:
    """pytest_terminal_summary body: the table, the timings, the JSON report."""
    if not _expected:
        return
    rows = table()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    terminalreporter.section("conformance: real runtime vs emulator")
    for row in rows:
        terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for key, value in sorted(timings.items()):
        terminalreporter.write_line(f"{key}: {value:.0f} s")
    write(path)
    terminalreporter.write_line(f"report: {path}")
