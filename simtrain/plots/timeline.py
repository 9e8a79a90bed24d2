"""Per-device Gantt chart of one simulated step (matplotlib, Agg backend).

`timeline_rows` turns records into the bars that are drawn (tests check this data, not
pixels): one row per simulated device, consecutive compute pieces of one action merged
into one bar (the TP collectives inside it are drawn as their own bars on top).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simtrain.engine.timeline import Record
from simtrain.plots import save_figure

COLORS = {
    "F": "#4C72B0", "B": "#55A868", "W": "#8FD1A8", "R": "#8172B2", "opt": "#64B5CD",
    "tp": "#DD8452", "cp": "#CCB974", "pp": "#C44E52", "dp": "#937860", "bubble": "#EEEEEE",
}
LEGEND = {"F": "forward", "B": "backward", "W": "weight grad", "R": "recompute", "opt": "optimizer",
          "tp": "TP comm", "cp": "CP comm", "pp": "PP comm", "dp": "DP comm", "bubble": "bubble / idle"}


@dataclass(frozen=True)
class Bar:
    start: float
    width: float
    kind: str
    label: str


def timeline_rows(records: list[Record], devices: list[int]) -> dict[int, list[Bar]]:
    rows: dict[int, list[Bar]] = {d: [] for d in devices}
    by_dev: dict[int, list[Record]] = {d: [] for d in devices}
    for r in records:
        if r.stream == "main" and r.device in by_dev:
            by_dev[r.device].append(r)
    for d, recs in by_dev.items():
        recs.sort(key=lambda r: r.start)
        cur: list | None = None  # [start, end, kind, label]
        for r in recs:
            if r.kind in ("F", "B", "W", "R"):
                if cur and cur[3] == r.label and cur[2] == r.kind:
                    cur[1] = r.end  # merge pieces of one action (TP bars are drawn on top)
                    continue
                if cur:
                    rows[d].append(Bar(cur[0], cur[1] - cur[0], cur[2], cur[3]))
                cur = [r.start, r.end, r.kind, r.label]
            else:
                rows[d].append(Bar(r.start, r.end - r.start, r.kind, r.label))
        if cur:
            rows[d].append(Bar(cur[0], cur[1] - cur[0], cur[2], cur[3]))
        # compute bars first so waits/comm inside merged actions are drawn on top
        rows[d].sort(key=lambda b: (b.kind not in ("F", "B", "W", "R"), b.start))
    return rows


def plot_timeline(rows: dict[int, list[Bar]], path: str | Path, title: str, row_names: dict[int, str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    devices = list(rows)
    n = len(devices)
    end = max((b.start + b.width for bars in rows.values() for b in bars), default=1.0)
    fig, ax = plt.subplots(figsize=(16, max(2.5, 0.42 * n + 1.6)))
    used = set()
    for i, d in enumerate(devices):
        y = n - 1 - i
        thin = end / 1500  # about one pixel: separators and overlays narrower than that are noise
        for b in rows[d]:
            is_compute = b.kind in ("F", "B", "W", "R")
            if not is_compute and b.width < thin / 2:
                continue
            h = 0.8 if b.kind in ("F", "B", "W", "R", "opt", "bubble", "pp", "dp") else 0.35
            ax.barh(y, b.width, left=b.start, height=h, color=COLORS.get(b.kind, "#999999"),
                    edgecolor="white" if is_compute and b.width > 4 * thin else "none", linewidth=0.3)
            used.add(b.kind)
            if b.kind in ("F", "B", "W", "R") and b.width > end / 90:
                ax.text(b.start + b.width / 2, y, b.label, ha="center", va="center", fontsize=6, color="white")
    names = row_names or {}
    ax.set_yticks(range(n))
    ax.set_yticklabels([names.get(d, f"rank {d}") for d in reversed(devices)], fontsize=8)
    ax.set_xlim(0, end * 1.005)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10)
    handles = [Patch(color=COLORS[k], label=LEGEND[k]) for k in COLORS if k in used]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    try:
        save_figure(fig, path, dpi=130 if path.suffix != ".svg" else None)
    finally:
        plt.close(fig)
    return path
