"""Chrome / Perfetto trace (Trace Event Format, JSON): one track per simulated device for
its compute stream and one for its background communication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simtrain.engine.timeline import Record


def trace_events(records: list[Record], device_names: dict[int, str] | None = None) -> list[dict[str, Any]]:
    names = device_names or {}
    events: list[dict[str, Any]] = []
    devices = sorted({r.device for r in records})
    for d in devices:
        pid = d
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": names.get(d, f"rank {d}")}})
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "compute"}})
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "args": {"name": "communication"}})
    for r in records:
        events.append({
            "name": r.label, "cat": r.kind, "ph": "X",
            "ts": r.start * 1e6, "dur": (r.end - r.start) * 1e6,
            "pid": r.device, "tid": 0 if r.stream == "main" else 1,
            "args": {"stage": r.stage, "microbatch": r.microbatch, "kind": r.kind},
        })
    return events


def write_trace(path: str | Path, records: list[Record], device_names: dict[int, str] | None = None, meta: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    doc = {"traceEvents": trace_events(records, device_names), "displayTimeUnit": "ms", "otherData": meta or {}}
    path.write_text(json.dumps(doc))
    return path
