"""Who is to blame for a pipeline wait: the bubble, or the communication that held up the sender.

The engine records a device's wait for a pipeline neighbour as `bubble` until the
neighbour starts sending and as `pp` while the transfer is in flight. But the neighbour
may have started late because it was itself stalled on the data-parallel stream: waiting
for its reduce-scatter or for FSDP's parameter all-gathers. That time is not a pipeline
bubble (it would not be there with free communication); it is
exposed communication that the pipeline propagated downstream.

`attribute_waits` splits every `wait ...` bubble record by what the sender's main stream
was doing over the same interval, in the sender's own (already attributed) terms:

    sender waiting on DP/FSDP communication             -> dp
    sender computing (with its TP/CP collectives and    -> bubble (a pipeline wait)
      receives, part of every stage's work) or idle
    sender itself in an attributed wait                 -> whatever that wait became

Waits are processed in order of their end: the sender's records over [start, end] all
end by then (the sender sends after them), so chains of waits resolve transitively. The
idle time at the end of the step (a device done while others finish) is attributed the
same way against the last device to finish (`tail_blame`).

Blame is local in time; a delay also propagates by shifting the schedule (the sender
computes late, so a later wait finds it computing). So the bubble is bounded by its
definition, the idle time the same schedule would leave with free communication: with
the compute the step actually ran (each action's recorded compute), the step would take
`free_comm_step` (the schedule's dependency graph evaluated with those costs, then the
optimizer), and device d would idle `free_comm_step - compute(d)`. A device's bubble
beyond that is exposed communication propagated through the pipeline; `bound_bubble`
moves it to the device's exposed TP/CP/PP/DP parts in proportion to them. With
`engine.comm = "free"` nothing changes.
"""

from __future__ import annotations

import bisect
from operator import attrgetter
from typing import Iterable

from simtrain.analysis.blamed import BlamedSpans
from simtrain.engine.timeline import Record
from simtrain.schedule.validate import rank_ends

COMM_PARTS = ("tp", "cp", "pp", "dp")
# What a wait is blamed on: only stalls on the data-parallel stream (FSDP gathers, a DP
# reduction the sender waited for). TP and CP collectives and the sender's own receives are
# part of every stage's work, as in the classic bubble analysis; what they add beyond the
# free-communication bubble is moved by `bound_bubble`.
BLAMED = ("dp",)
_START = attrgetter("start")  # a C-level sort key: cheaper than a lambda per record


def _blame_kind(kind: str) -> str:
    return kind if kind in BLAMED else "bubble"


def _sender_stage(r: Record) -> int | None:
    """Virtual stage whose send ends the wait `r` ("wait F3": the previous stage's F)."""
    if r.label.startswith("wait F"):
        return r.stage - 1
    if r.label.startswith("wait B"):
        return r.stage + 1
    return None


class _Timeline:
    """Per-device main-stream records (`by_dev`, in record order), with attributed
    replacements; sorted by start where a device's records are looked up by time."""

    def __init__(self, records: Iterable[Record], by_dev: dict[int, list[Record]] | None = None):
        if by_dev is None:
            by_dev = {}
            for r in records:
                if r.stream == "main":
                    by_dev.setdefault(r.device, []).append(r)
        self.by_dev = by_dev
        self.starts: dict[int, list[float]] = {}
        self._by_start: dict[int, list[Record]] = {}
        self.replaced: dict[int, list[Record]] = {}  # id(record) -> its attributed pieces

    def _sorted(self, dev: int) -> tuple[list[Record], list[float]]:
        starts = self.starts.get(dev)
        if starts is None:  # (a copy: by_dev keeps record order for `attributed`)
            self._by_start[dev] = sorted(self.by_dev.get(dev, []), key=_START)  # already in order: one linear pass
            starts = self.starts[dev] = [r.start for r in self._by_start[dev]]
        return self._by_start[dev], starts

    def attributed(self, dev: int) -> list[Record]:
        """`dev`'s main-stream records after attribution, in record order: what filtering
        the attributed records by device gives (a new list)."""
        recs, replaced = self.by_dev.get(dev, []), self.replaced
        if not replaced:
            return list(recs)
        return [p for r in recs for p in replaced.get(id(r), (r,))]

    def kinds(self, dev: int, t0: float, t1: float) -> list[tuple[float, float, str]]:
        """(start, end, blamed part) covering [t0, t1] from `dev`'s attributed records;
        stretches without a record are idle (bubble)."""
        recs, starts = self._sorted(dev)
        i = max(0, bisect.bisect_right(starts, t0) - 1)
        out: list[tuple[float, float, str]] = []
        t = t0
        n, replaced, blamed = len(recs), self.replaced, BLAMED
        # (called once per pipeline wait: max/min and the attribute look-ups are inlined,
        # with the tie-breaking of max and min, which return their first argument on a tie)
        while i < n:
            r = recs[i]
            if r.start >= t1:
                break
            rep = replaced.get(id(r))
            for p in (r,) if rep is None else rep:
                ps, pe = p.start, p.end
                a = t if t > ps else ps
                b = t1 if t1 < pe else pe
                if b <= a:
                    continue
                if a > t:
                    out.append((t, a, "bubble"))
                k = p.kind
                out.append((a, b, k if k in blamed else "bubble"))
                t = b
            i += 1
        if t < t1:
            out.append((t, t1, "bubble"))
        return out


def _merge(pieces: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for a, b, k in pieces:
        if out and out[-1][2] == k and abs(out[-1][1] - a) <= 1e-15:
            out[-1] = (out[-1][0], b, k)
        else:
            out.append((a, b, k))
    return out


def _scan(records: list[Record]) -> tuple[dict[int, list[Record]], list[tuple], list[Record]]:
    """One pass over the records for what attribution needs of them: each device's
    main-stream records in record order, the pipeline waits as (end, start, position,
    sender stage, record), and the blamed main-stream records (in record order)."""
    by_dev: dict[int, list[Record]] = {}
    waits: list[tuple] = []
    blamed: list[Record] = []
    get = by_dev.get
    i = -1
    # (unpacked: cheaper than attribute look-ups, millions of records in a per-rank run)
    for r in records:
        i += 1
        dev, stream, kind = r[0], r[1], r[2]  # (Record: device, stream, kind, ...)
        if stream != "main":
            continue
        mine = get(dev)
        if mine is None:
            mine = by_dev[dev] = []
        mine.append(r)
        if kind == "bubble":
            stage = _sender_stage(r)
            if stage is not None:
                waits.append((r.end, r.start, i, stage, r))
        elif kind in BLAMED:
            blamed.append(r)
    return by_dev, waits, blamed


def attribute_waits(plan, records: list[Record]) -> tuple[list[Record], _Timeline]:
    """Records with every pipeline-wait bubble split by blame (see the module docstring),
    and the attributed timeline (for `tail_blame`). Record order is kept."""
    # (end, start, position, sender stage, record): sorted as tuples, in order of end and
    # start with ties in record order, as a stable sort by (end, start) would leave them;
    # the output is spliced from slices of `records` at the positions
    by_dev, waits, blamed_recs = _scan(records)
    tl = _Timeline(records, by_dev)
    if not waits:
        return records, tl
    blamed = BlamedSpans(blamed_recs)
    S = len(plan.schedule.placement)
    peers: dict[tuple[int, int], int] = {}
    at: dict[int, list[Record]] = {}  # position in `records` -> the attributed pieces
    waits.sort()
    for _, _, i, stage, r in waits:
        if not 0 <= stage < S:
            continue
        sender = peers.get((r.device, stage))
        if sender is None:
            sender = peers[(r.device, stage)] = plan.peer(r.device, stage)
        if sender == r.device:
            continue
        if not blamed.overlaps(sender, r.start, r.end):  # every piece would be a bubble
            continue
        pieces = tl.kinds(sender, r.start, r.end)
        # the pieces cover the wait without gaps, so with none blamed on anything they would
        # merge into one bubble: the wait stays as it is (the usual case; no merge needed)
        if pieces and all(k == "bubble" for _, _, k in pieces):
            continue
        pieces = _merge(pieces)
        if len(pieces) == 1 and pieces[0][2] == "bubble":
            continue
        tl.replaced[id(r)] = at[i] = [r._replace(kind=k, start=a, end=b) for a, b, k in pieces]
        for a, b, k in pieces:
            if k in BLAMED:
                blamed.add(r.device, a, b)
    if not tl.replaced:
        return records, tl
    # the records between replaced ones are copied a slice at a time (no per-record Python work)
    out: list[Record] = []
    prev = 0
    for i in sorted(at):
        out.extend(records[prev:i])
        out.extend(at[i])
        prev = i + 1
    out.extend(records[prev:])
    return out, tl


def tail_blame(tl: _Timeline, last_device: int, t0: float, t1: float) -> dict[str, float]:
    """Seconds of [t0, t1] (a device idle at the end of the step) by what the last device
    to finish was doing meanwhile."""
    out: dict[str, float] = {}
    if t1 <= t0:
        return out
    for a, b, k in tl.kinds(last_device, t0, t1):
        out[k] = out.get(k, 0.0) + (b - a)
    return out


def free_comm_step(plan, records: list[Record], by_dev: dict[int, list[Record]] | None = None) -> float:
    """The step time with free communication and the recorded compute: each pipeline
    chain's schedule evaluated as a dependency graph with its devices' recorded F, B (with
    recomputation) and W seconds per (stage, micro-batch), plus each rank's optimizer.
    `by_dev`: each device's main-stream records in record order, when the caller has them
    (attribution leaves compute records as they are: `_Timeline.by_dev` will do); then
    only the chains' devices' records are visited, in the same order per device."""
    sched, L = plan.schedule, plan.layout
    if plan.symmetric:
        chains = [list(plan.simulated)]
    else:  # every class's chain of pipeline neighbours (per-rank: every replica's)
        varied = bool(plan.speed) or plan.scenario.whatif.compute_jitter > 0
        heads = [d for d in plan.simulated if L.coord(d).pp == 0]
        chains = [[plan.classes.peer(d, p) for p in range(L.pp)] for d in (heads if varied else heads[:1])]
    # only the chains' devices' records count (per-rank without what-ifs: one replica's)
    needed = {d for chain in chains for d in chain}
    cost: dict[tuple[int, int, int, str], float] = {}
    opt: dict[int, float] = {}
    # (sums are per device: the devices' own records in record order add up alike)
    mine = records if by_dev is None else (r for d in sorted(needed) for r in by_dev.get(d, ()))
    for r in mine:
        if r.device not in needed or r.stream != "main":
            continue
        k = r.kind
        if k in ("F", "B", "W", "R"):
            key = (r.device, r.stage, r.microbatch, "B" if k == "R" else k)
            cost[key] = cost.get(key, 0.0) + r.end - r.start
        elif k == "opt":
            opt[r.device] = opt.get(r.device, 0.0) + r.end - r.start
    step = 0.0
    place, get = sched.placement, cost.get
    for chain in chains:
        costs = [[get((chain[place[a.stage]], a.stage, a.microbatch, a.kind), 0.0) for a in sched.actions.get(r, ())]
                 for r in range(sched.pp)]
        ends = rank_ends(sched, costs)
        for rank in sched.actions:
            end = max(ends[rank], default=0.0)
            step = max(step, end + opt.get(chain[rank], 0.0))
    return step


def bound_bubble(parts: dict[str, float], free_idle: float) -> None:
    """Cap one device's bubble at `free_idle` (its idle time with free communication),
    moving the excess to its exposed communication parts in proportion to them."""
    excess = parts.get("bubble", 0.0) - max(free_idle, 0.0)
    comm = {k: parts.get(k, 0.0) for k in COMM_PARTS}
    total = sum(comm.values())
    if excess <= 1e-12 or total <= 0:
        return
    parts["bubble"] -= excess
    for k, v in comm.items():
        parts[k] += excess * v / total
