"""Compare schedules across micro-batch counts, for `simtrain schedules` (no simpy, no plotting).

For each (schedule, M) a row says whether it runs and, if so, with uniform costs and free
communication (the classic bubble analysis of Huang et al. 2019 / Narayanan et al. 2021):

- bubble: idle share of the ranks, 1 - sum(busy) / (pp * makespan), from `evaluate`;
  costs per (stage, micro-batch) F = 1/c, B = 2/c, and a split backward B = W = 1/c, where
  c = vp / chains is the number of chunks a micro-batch visits on each rank, so one
  micro-batch costs 3 units per rank whatever the schedule (vp = 1: F=1, B=2). DualPipe's
  overlapped F&B pairs run one after the other here (no overlap gain is assumed).
- peak in flight: per rank, the most (stage, micro-batch) activations alive at once, from
  F until B, or until W when the backward is split (W needs the saved inputs; this is the
  convention under which ZB-H1's peak equals 1F1B's, Qi et al. 2023 §3.1). The table also
  shows max over ranks / c, in whole-rank micro-batches (one chunk holds 1/c of a
  micro-batch's work on the rank): 1F1B peaks at p on rank 0, interleaved at (2(p-1) + (v-1)p + 1)/v = p + (p-1)/v.
- p2p sends: activations (after F) and gradients (after B) that cross ranks in one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from simtrain.schedule import REGISTRY, build, check, constraints
from simtrain.schedule.action import Action, Schedule
from simtrain.schedule.validate import evaluate, peak_in_flight


def uniform_cost(schedule: Schedule) -> Callable[[Action], float]:
    """F = 1, B = 2 per micro-batch per rank (B = W = 1 if split), divided among the
    vp / chains chunks a micro-batch visits on each rank."""
    v = schedule.vp / schedule.chains

    def cost(a: Action) -> float:
        if a.kind == "B" and not schedule.has_w(a.stage, a.microbatch):
            return 2.0 / v  # a full backward
        return 1.0 / v

    return cost


def p2p_transfers(schedule: Schedule) -> int:
    """Cross-rank sends in one step: F(s) sends activations to s+1, B(s) gradients to s-1.

    W sends nothing. With looped placement and pp > 1 every stage boundary crosses ranks,
    so the count is 2 * (pp*vp - 1) * M; the V placement keeps the turn on one rank.
    """
    place = schedule.placement
    sends = 0
    for acts in schedule.actions.values():
        for a in acts:
            if a.kind == "F" and not schedule.is_last(a.stage) and place[a.stage + 1] != place[a.stage]:
                sends += 1
            elif a.kind == "B" and not schedule.is_first(a.stage) and place[a.stage - 1] != place[a.stage]:
                sends += 1
    return sends


@dataclass(frozen=True)
class ScheduleRow:
    """One (schedule, M) outcome; `reason` is None when the schedule runs."""

    schedule: str
    pp: int
    vp: int
    microbatches: int
    params: Mapping[str, object] = field(default_factory=dict)
    reason: str | None = None
    bubble: float | None = None
    makespan: float | None = None
    peak_in_flight: tuple[int, ...] = ()
    p2p_sends: int | None = None
    chains: int = 1

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def peak_microbatches(self) -> float | None:
        """Max over ranks of peak in-flight activations, in whole-rank micro-batches (a
        micro-batch visits vp / chains chunks of a rank)."""
        return max(self.peak_in_flight) * self.chains / self.vp if self.peak_in_flight else None


def _effective_params(name: str, pp: int, m: int, params: Mapping[str, object]) -> dict[str, object]:
    kind = REGISTRY[name]
    out = {k: v for k, v in params.items() if k in kind.params and v is not None}
    if name == "llama3" and "n" not in out:
        out["n"] = constraints.llama3_default_n(pp, m)
    return out


def analyse(name: str, pp: int, vp: int, microbatches: int, **params: object) -> ScheduleRow:
    """Row for one schedule; a violated constraint becomes the row's `reason`."""
    params = _effective_params(name, pp, microbatches, params)
    why = check(name, pp, vp, microbatches, **params)
    if why:
        return ScheduleRow(name, pp, vp, microbatches, params, reason=why)
    sched = build(name, pp, vp, microbatches, **params)
    ev = evaluate(sched, uniform_cost(sched))
    peaks = peak_in_flight(sched)
    return ScheduleRow(
        name, pp, vp, microbatches, params,
        bubble=ev.bubble_fraction, makespan=ev.makespan,
        peak_in_flight=tuple(peaks[r] for r in range(pp)), p2p_sends=p2p_transfers(sched), chains=sched.chains,
    )


def explore(
    pp: int,
    vp: int,
    microbatches: Iterable[int],
    names: Iterable[str] | None = None,
    params: Mapping[str, object] | None = None,
    single_chunk_at_vp1: bool = True,
) -> list[ScheduleRow]:
    """Rows for every (schedule, M). `params` (e.g. {"n": 5}) go to schedules that take them.

    With `single_chunk_at_vp1`, schedules that cannot interleave (gpipe, 1f1b, zb-h1) are
    analysed at vp = 1 so they stay comparable when vp > 1 (their rows show vp = 1), and
    schedules with a fixed chunk count (zb-v, dualpipe, dualpipe-v: 2) at that count.
    """
    names = list(names) if names is not None else list(REGISTRY)
    rows = []
    for name in names:
        kind = REGISTRY[name]
        kind_vp = vp if (kind.interleaved or not single_chunk_at_vp1) else 1
        if kind.vp and single_chunk_at_vp1:
            kind_vp = kind.vp
        for m in microbatches:
            rows.append(analyse(name, pp, kind_vp, m, **dict(params or {})))
    return rows


_COLUMNS = ("schedule", "pp", "vp", "M", "params", "bubble %", "makespan [F]", "peak [chunk acts]", "peak [mb]",
            "p2p [sends/step]")
UNITS = ("units: bubble in % of the step; makespan in forward times (F = 1, B = 2 per micro-batch per rank);\n"
         "       peak: most activations alive on one rank, as (chunk, micro-batch) pairs and in whole micro-batches\n"
         "       (pairs / vp); p2p: point-to-point sends per step")


def format_table(rows: Iterable[ScheduleRow]) -> str:
    """Aligned text table, one line per row; unsupported rows end with the reason instead."""
    body: list[tuple[list[str], str]] = []
    for r in rows:
        params = ",".join(f"{k}={v}" for k, v in r.params.items()) or "-"
        head = [r.schedule, str(r.pp), str(r.vp), str(r.microbatches), params]
        if r.valid:
            cells = head + [
                f"{100 * r.bubble:.1f}", f"{r.makespan:g}", str(max(r.peak_in_flight)),
                f"{r.peak_microbatches:.3g}", str(r.p2p_sends),
            ]
            body.append((cells, ""))
        else:
            body.append((head + ["-"] * 5, r.reason or ""))
    widths = [max([len(c)] + [len(cells[i]) for cells, _ in body]) for i, c in enumerate(_COLUMNS)]
    right = {1, 2, 3, 5, 6, 7, 8, 9}  # numeric columns

    def line(cells: list[str], tail: str = "") -> str:
        text = "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return (text + ("  " + tail if tail else "")).rstrip()

    out = [line(list(_COLUMNS), "why not"), line(["-" * w for w in widths])]
    out += [line(cells, tail) for cells, tail in body]
    return "\n".join(out) + "\n" + UNITS + "\n"


@dataclass(frozen=True)
class BubbleCurves:
    """Plot data: per schedule label, (M, bubble fraction) points where it runs; `grid` is
    every M asked for (a line breaks where its schedule cannot run), `basis` what the
    values are."""

    pp: int
    vp: int
    series: dict[str, list[tuple[int, float]]]
    grid: tuple[int, ...] = ()
    basis: str = "uniform costs, free communication"


@dataclass(frozen=True)
class ChartLine:
    """One drawn line: its legend label (schedules with identical values share a line),
    y per M of the grid (None where the schedule cannot run: the line breaks there)."""

    label: str
    xs: tuple[int, ...]
    ys: tuple[float | None, ...]


def chart_lines(data: BubbleCurves) -> list[ChartLine]:
    """Lines to draw: every M of the grid, None where invalid; series with identical points
    merged into one line labelled with all their names, so none hides another."""
    grid = tuple(sorted(set(data.grid) | {m for pts in data.series.values() for m, _ in pts}))
    lines: list[ChartLine] = []
    seen: dict[tuple, int] = {}
    for label, pts in data.series.items():
        if not pts:
            continue
        values = dict(pts)
        ys = tuple(values.get(m) for m in grid)
        key = tuple(None if y is None else round(y, 12) for y in ys)
        if key in seen:
            i = seen[key]
            lines[i] = ChartLine(f"{lines[i].label} = {label}", grid, lines[i].ys)
        else:
            seen[key] = len(lines)
            lines.append(ChartLine(label, grid, ys))
    return lines


def bubble_curves(
    pp: int,
    vp: int,
    microbatches: Iterable[int],
    names: Iterable[str] | None = None,
    params: Mapping[str, object] | None = None,
) -> BubbleCurves:
    """Bubble fraction vs micro-batches per DP replica, one series per schedule."""
    series: dict[str, list[tuple[int, float]]] = {}
    microbatches = list(microbatches)
    for row in explore(pp, vp, microbatches, names, params):
        label = f"{row.schedule} (vp={row.vp})"
        series.setdefault(label, [])
        if row.valid:
            series[label].append((row.microbatches, float(row.bubble)))
    return BubbleCurves(pp, vp, series, tuple(microbatches))
