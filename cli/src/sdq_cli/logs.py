"""`sdq logs`: every log line of one task, from the local stack's log files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def task_lines(log_dir: Path, task_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(timestamp, source, record) for every JSON log line carrying this task id, in time order."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start < 0 or task_id not in line:
                continue
            try:
                record = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("task_id") == task_id:
                found.append((str(record.get("timestamp", "")), path.stem, record))
    return sorted(found, key=lambda item: item[0])


def format_line(stamp: str, source: str, record: dict[str, Any]) -> str:
    skip = {"timestamp", "event", "level", "task_id"}
    extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in skip)
    return (
        f"{stamp}  {source:<26} {record.get('level', '')!s:<7} {record.get('event', '')}  {extra}"
    )
