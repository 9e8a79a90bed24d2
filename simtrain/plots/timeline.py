"""Per-device Gantt chart of one simulated step (matplotlib, Agg backend).

`timeline_rows` turns records into bars (one row per simulated device; consecutive compute
pieces of one action merged into one bar); `gantt_layers` turns the bars of a time window
into what is drawn (tests check this data, not pixels):

- a bar at least one pixel wide is a rectangle of its kind (compute, bubble, exposed TP,
  CP, PP and DP communication, recomputation, optimizer);
- bars narrower than a pixel (at the 405B default a TP all-reduce is a tenth of one) are
  not dropped: per pixel column, each kind's share of the column's time is drawn as a
  strip at the bottom of the row, that share of the row high. Exposed TP spread over a
  step in a thousand slivers shows as an orange band as thick as its share.

Every kind is one PolyCollection (not one patch per interval), so the 405B default draws
in about a second. The legend names every kind drawn, with its share of the step (the
breakdown of the report) or of the window.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simtrain.engine.timeline import Record
from simtrain.plots import save_figure

COLORS = {
    "F": "#4C72B0", "B": "#55A868", "W": "#8FD1A8", "R": "#8172B2", "opt": "#64B5CD", "nccl_sm": "#2F4B7C",
    "tp": "#DD8452", "cp": "#CCB974", "ep": "#DA8BC3", "pp": "#C44E52", "dp": "#937860", "bubble": "#DDDDDD",
}
LEGEND = {"F": "forward", "B": "backward", "W": "weight grad", "R": "recompute", "opt": "optimizer",
          "nccl_sm": "compute slowed by NCCL's SMs",
          "tp": "exposed TP comm", "cp": "exposed CP comm", "ep": "exposed EP comm", "pp": "exposed PP comm",
          "dp": "exposed DP comm",
          "bubble": "bubble / idle"}
# breakdown part of each kind (simtrain.analysis.metrics.PARTS), for the legend's shares
PART = {"F": "compute", "B": "compute", "W": "compute", "R": "recompute", "opt": "optimizer", "nccl_sm": "nccl_sm",
        "tp": "tp", "cp": "cp", "ep": "ep", "pp": "pp", "dp": "dp", "bubble": "bubble"}
COMPUTE = ("F", "B", "W", "R")
ORDER = tuple(COLORS)  # stacking order of the sub-pixel strips, bottom up
COLUMNS = 1600  # pixel columns of the time axis at the default size (16 in at 130 dpi, less margins)
HEIGHT = 0.8  # bar height in row units
STEP = 1 / 32  # sub-pixel strips are drawn in multiples of 1/32 of the bar height (about a pixel)


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
            if r.kind in COMPUTE:
                if cur and cur[3] == r.label and cur[2] == r.kind:
                    cur[1] = r.end  # merge pieces of one action (the TP waits inside are drawn on top)
                    continue
                if cur:
                    rows[d].append(Bar(cur[0], cur[1] - cur[0], cur[2], cur[3]))
                cur = [r.start, r.end, r.kind, r.label]
            else:
                rows[d].append(Bar(r.start, r.end - r.start, r.kind, r.label))
        if cur:
            rows[d].append(Bar(cur[0], cur[1] - cur[0], cur[2], cur[3]))
        # compute bars first so that waits and communication inside merged actions are drawn on top
        rows[d].sort(key=lambda b: (b.kind not in COMPUTE, b.start))
    return rows


@dataclass
class Layers:
    """What is drawn (`seconds`: each kind's time in the window; for compute kinds, the
    merged action bars less the waits drawn over them): per kind, rectangles (x, width, y, height) of the bars at least a
    pixel wide and polygons (vertex arrays) of the sub-pixel strips, one per row; labels
    (x, y, text) of the widest bars."""

    window: tuple[float, float]
    rects: dict[str, list[tuple[float, float, float, float]]]
    strips: dict[str, list[np.ndarray]]
    edges: dict[str, list[bool]]  # per wide rect: a white separator edge (bars over 4 pixels)
    labels: list[tuple[float, float, str]]
    seconds: dict[str, float]  # time of each kind inside the window, all rows


def gantt_layers(rows: dict[int, list[Bar]], window: tuple[float, float] | None = None, columns: int = COLUMNS) -> Layers:
    end = max((b.start + b.width for bars in rows.values() for b in bars), default=1.0)
    t0, t1 = window if window else (0.0, end)
    px = (t1 - t0) / columns
    rects: dict[str, list] = {k: [] for k in ORDER}
    strips: dict[str, list] = {k: [] for k in ORDER}
    edges: dict[str, list] = {k: [] for k in ORDER}
    seconds = {k: 0.0 for k in ORDER}
    labels: list[tuple[float, float, str]] = []
    n = len(rows)
    for i, bars in enumerate(rows.values()):
        y = n - 1 - i - HEIGHT / 2
        narrow: dict[str, list[tuple[float, float]]] = {}
        inside = _inside_actions(bars)
        for b in bars:
            a, z = max(b.start, t0), min(b.start + b.width, t1)
            if z <= a or b.kind not in rects:
                continue
            seconds[b.kind] += z - a
            host = inside.get(id(b))
            if host is not None:  # a wait inside a merged action bar: not that action's compute time
                seconds[host] -= z - a
            if z - a >= px:
                rects[b.kind].append((a, z - a, y, HEIGHT))
                edges[b.kind].append(b.kind in COMPUTE and z - a > 6 * px)
                if b.kind in COMPUTE and z - a > (t1 - t0) / 90:
                    labels.append((a + (z - a) / 2, y + HEIGHT / 2, b.label))
            else:
                narrow.setdefault(b.kind, []).append((a, z))
        if narrow:
            _strips(narrow, t0, px, columns, y, strips)
    return Layers((t0, t1), rects, strips, edges, labels, seconds)


def _inside_actions(bars: list[Bar]) -> dict[int, str]:
    """id of each non-compute bar that lies inside a merged compute bar -> that bar's kind."""
    compute = sorted((b for b in bars if b.kind in COMPUTE), key=lambda b: b.start)
    starts = [b.start for b in compute]
    out: dict[int, str] = {}
    for b in bars:
        if b.kind in COMPUTE:
            continue
        j = bisect.bisect_right(starts, b.start) - 1
        if j >= 0 and b.start + b.width <= compute[j].start + compute[j].width + 1e-12:
            out[id(b)] = compute[j].kind
    return out


def _strips(narrow: dict[str, list[tuple[float, float]]], t0: float, px: float, columns: int, y: float,
            out: dict[str, list]) -> None:
    """Per pixel column, each kind's share of its time, stacked from the row's bottom in
    ORDER and rounded to STEP: one polygon per kind and row (a step outline), so a
    thousand slivers cost one path."""
    share: dict[str, np.ndarray] = {}
    for kind, spans in narrow.items():
        a = np.array([s for s, _ in spans])
        z = np.array([e for _, e in spans])
        acc = np.zeros(columns + 1)
        ca = np.clip(((a - t0) / px).astype(int), 0, columns)
        cz = np.clip(((z - t0) / px).astype(int), 0, columns)
        same = ca == cz
        np.add.at(acc, ca[same], (z - a)[same])
        split = ~same  # narrower than a column: spans at most two
        edge = t0 + cz[split] * px
        np.add.at(acc, ca[split], edge - a[split])
        np.add.at(acc, cz[split], z[split] - edge)
        share[kind] = acc[:columns] / px
    base = np.zeros(columns)
    xs = t0 + px * np.arange(columns + 1)
    for kind in ORDER:
        if kind not in share:
            continue
        h = np.round(np.minimum(share[kind], 1.0) / STEP) * STEP * HEIGHT
        if h.any():
            out[kind].append(_step_polygon(xs, y + base, y + base + h))
        base = base + h


def _step_polygon(xs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Outline of the region between two step functions (value i on [xs[i], xs[i+1]]):
    along `hi` left to right, back along `lo`; runs of equal values collapse to one step."""
    def outline(v: np.ndarray) -> np.ndarray:
        keep = np.r_[True, v[1:] != v[:-1]]  # columns where the value changes
        starts = np.flatnonzero(keep)
        ends = np.r_[starts[1:], len(v)]
        pts = np.empty((2 * len(starts), 2))
        pts[0::2, 0], pts[1::2, 0] = xs[starts], xs[ends]
        pts[0::2, 1] = pts[1::2, 1] = v[starts]
        return pts

    return np.vstack([outline(hi), outline(lo)[::-1]])


def parse_window(text: str, step: float) -> tuple[float, float]:
    """`--window START:END` in seconds of the step, e.g. 2.5:3; END may be omitted (to the
    end of the step)."""
    from simtrain.scenario.errors import SimtrainError

    lo, sep, hi = str(text).partition(":")
    try:
        a = float(lo)
        b = float(hi) if hi.strip() else step
    except ValueError:
        a = b = float("nan")
    if not sep or not (0 <= a < b) or a >= step:
        raise SimtrainError(f"--window {text!r}: expected START:END in seconds with 0 <= START < END and START "
                            f"before the step's end ({step:.3f} s); write e.g. --window 0:{step / 4:.2f}")
    return a, min(b, step)


def plot_timeline(rows: dict[int, list[Bar]], path: str | Path, title: str, row_names: dict[int, str] | None = None,
                  window: tuple[float, float] | None = None, shares: dict[str, float] | None = None) -> Path:
    """Draw the Gantt chart to a .png or .svg file (see `gantt_figure`)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    # SVG is vector: half the columns keep the file near a few MB at the 405B default
    fig = gantt_figure(rows, title, row_names, window, shares, COLUMNS if path.suffix.lower() != ".svg" else COLUMNS // 2)
    try:
        save_figure(fig, path, "--timeline", dpi=130 if path.suffix != ".svg" else None)
    finally:
        plt.close(fig)
    return path


def gantt_figure(rows: dict[int, list[Bar]], title: str, row_names: dict[int, str] | None = None,
                 window: tuple[float, float] | None = None, shares: dict[str, float] | None = None,
                 columns: int = COLUMNS):
    """The Gantt chart as a figure: one PolyCollection per kind for the bars and one per
    kind for the sub-pixel strips; `shares` (breakdown part -> share of the step) label the
    legend, else each kind's share of the drawn rows over the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    lay = gantt_layers(rows, window, columns)
    t0, t1 = lay.window
    devices = list(rows)
    n = len(devices)
    fig, ax = plt.subplots(figsize=(16, max(2.5, 0.42 * n + 1.8)))
    for kind in ORDER:
        if lay.rects[kind]:
            # edges in the face colour close the antialiasing seams between touching bars;
            # white ones separate actions wide enough to tell apart
            ax.add_collection(PolyCollection(_verts(lay.rects[kind]), facecolors=COLORS[kind], linewidths=0.3,
                                             edgecolors=["white" if e else COLORS[kind] for e in lay.edges[kind]]))
    for kind in ORDER:
        if lay.strips[kind]:
            ax.add_collection(PolyCollection(lay.strips[kind], facecolors=COLORS[kind], linewidths=0))
    for x, y, text in lay.labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=6, color="white")
    names = row_names or {}
    ax.set_yticks(range(n))
    ax.set_yticklabels([names.get(d, f"rank {d}") for d in reversed(devices)], fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(t0, t1 + (t1 - t0) * 0.005)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10)
    total = (t1 - t0) * max(n, 1)
    handles = []
    for k in ORDER:
        if not (lay.rects[k] or lay.strips[k]):
            continue
        share = shares.get(PART[k]) if shares is not None and PART[k] != "compute" else None
        if share is None:
            share = lay.seconds[k] / total if total > 0 else 0.0
        handles.append(Patch(color=COLORS[k], label=f"{LEGEND[k]} {100 * share:.1f}%"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    rows_of_legend = (len(handles) + 5) // 6
    # margins from the text sizes, not tight_layout (which draws the whole figure once more)
    w, h = fig.get_figwidth(), fig.get_figheight()
    widest = max((len(names.get(d, f"rank {d}")) for d in devices), default=6)
    fig.subplots_adjust(left=(0.25 + 0.065 * widest) / w, right=1 - 0.2 / w, top=1 - 0.4 / h,
                        bottom=(0.65 + 0.22 * rows_of_legend) / h)
    return fig


def _verts(rects: list[tuple[float, float, float, float]]) -> np.ndarray:
    r = np.asarray(rects, dtype=float)
    x0, x1, y0, y1 = r[:, 0], r[:, 0] + r[:, 1], r[:, 2], r[:, 2] + r[:, 3]
    return np.stack([np.stack([x0, y0], 1), np.stack([x0, y1], 1), np.stack([x1, y1], 1), np.stack([x1, y0], 1)], 1)
