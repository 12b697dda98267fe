"""`sdq trace`: the span tree of one task's trace, from the local stack's span files or X-Ray."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sdq_cli.errors import CliError, Exit


@dataclass
class Span:
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start: float  # epoch seconds
    end: float
    attributes: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000


def xray_to_hex(trace_id: str) -> str:
    """1-5759e988-bd862e3fe1be46a994272793 → 5759e988bd862e3fe1be46a994272793"""
    parts = trace_id.split("-")
    if len(parts) != 3 or parts[0] != "1":
        raise CliError(f"not an X-Ray trace id: {trace_id!r}", Exit.USAGE)
    return (parts[1] + parts[2]).lower()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def spans_from_files(trace_dir: Path, trace_hex: str) -> list[Span]:
    """Spans of one trace from every *.jsonl span file (one per process) in trace_dir."""
    wanted = "0x" + trace_hex
    spans = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
            if raw.get("context", {}).get("trace_id") != wanted:
                continue
            resource = raw.get("resource", {}).get("attributes", {})
            spans.append(
                Span(
                    span_id=raw["context"]["span_id"],
                    parent_id=raw.get("parent_id"),
                    name=raw.get("name", "?"),
                    service=resource.get("service.name", path.stem.rsplit("-", 1)[0]),
                    start=_epoch(raw["start_time"]),
                    end=_epoch(raw["end_time"]),
                    attributes=raw.get("attributes") or {},
                    error=raw.get("status", {}).get("status_code") == "ERROR",
                )
            )
    return spans


def spans_from_xray(xray: Any, trace_id: str) -> list[Span]:
    traces = xray.batch_get_traces(TraceIds=[trace_id]).get("Traces", [])
    spans: list[Span] = []

    def walk(doc: dict[str, Any], service: str, parent: str | None) -> None:
        spans.append(
            Span(
                span_id=doc["id"],
                parent_id=doc.get("parent_id", parent),
                name=doc.get("name", "?"),
                service=service,
                start=float(doc["start_time"]),
                end=float(doc.get("end_time", doc["start_time"])),
                error=bool(doc.get("error") or doc.get("fault")),
            )
        )
        for sub in doc.get("subsegments", []):
            walk(sub, service, doc["id"])

    for item in traces:
        for segment in item.get("Segments", []):
            doc = json.loads(segment["Document"])
            walk(doc, doc.get("name", "?"), doc.get("parent_id"))
    return spans


def build_tree(spans: Iterable[Span]) -> tuple[list[Span], list[Span]]:
    """(roots, orphans): roots have no parent; orphans name a parent that was not recorded."""
    by_id = {s.span_id: s for s in spans}
    roots, orphans = [], []
    for span in sorted(by_id.values(), key=lambda s: s.start):
        if span.parent_id is None:
            roots.append(span)
        elif span.parent_id in by_id:
            by_id[span.parent_id].children.append(span)
        else:
            orphans.append(span)
    return roots, orphans


def render(trace_id: str, spans: list[Span]) -> str:
    if not spans:
        return f"no spans recorded for trace {trace_id}"
    roots, orphans = build_tree(spans)
    t0 = min(s.start for s in spans)
    total = max(s.end for s in spans) - t0
    lines = [f"trace {trace_id}: {len(spans)} spans over {total * 1000:.1f} ms"]

    def emit(span: Span, depth: int, note: str = "") -> None:
        label = f"{'  ' * depth}{span.name}"
        flag = " !" if span.error else ""
        lines.append(
            f"  {label:<44} {span.service:<20} +{(span.start - t0) * 1000:9.1f} ms "
            f"{span.duration_ms:9.1f} ms{flag}{note}"
        )
        for child in span.children:
            emit(child, depth + 1)

    for root in roots:
        emit(root, 0)
    for orphan in orphans:
        emit(orphan, 0, "  (parent not recorded)")
    return "\n".join(lines)
