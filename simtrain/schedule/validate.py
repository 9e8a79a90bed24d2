"""Check any schedule, and evaluate it with per-kind uniform costs (no simpy).

Rules (the same whichever generator or file the schedule came from):
- every action's stage is a valid virtual stage placed on the rank that runs it;
- every (stage, micro-batch) on the micro-batch's route (every stage unless the schedule
  has several chains, as DualPipe does) runs F exactly once and B exactly once; W exactly
  once if the schedule splits the backward, never otherwise (at most once in a schedule
  declared `mixed`, where a B without W is a full backward); nothing runs off the route;
- on its rank F comes before B, and B before W;
- cross-stage dependencies are satisfiable: F(s, m) needs F(s-1, m), B(s, m) needs
  B(s+1, m) (or F(s, m) on the last stage), W(s, m) needs B(s, m), where first, last
  and next are along the route. Executing the per-rank lists in order must never deadlock;
- the two actions of an overlapped pair (`A&B`) do not depend on each other.
On failure the error shows the step x rank grid with the first bad action marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simtrain.scenario.errors import SimtrainError
from simtrain.schedule.action import Action, Schedule


class ScheduleError(SimtrainError):
    """A schedule that breaks a rule; the message's first line says which."""


def dependencies(a: Action, schedule: Schedule) -> tuple[Action, ...]:
    """The actions that must finish before `a` may start (cross-stage and same-stage)."""
    if a.kind == "F":
        return (Action(a.stage - 1, "F", a.microbatch),) if not schedule.is_first(a.stage) else ()
    if a.kind == "B":
        if schedule.is_last(a.stage):
            return (Action(a.stage, "F", a.microbatch),)
        return (Action(a.stage + 1, "B", a.microbatch), Action(a.stage, "F", a.microbatch))
    return (Action(a.stage, "B", a.microbatch),)


_DEPS: dict[int, tuple[Schedule, dict]] = {}  # id(schedule) -> (schedule, its dependencies)


def _rank_dependencies(schedule: Schedule) -> dict[tuple[int, Action], tuple[tuple[Action, bool], ...]]:
    """(rank, action) -> its dependencies, each with whether it crosses ranks (a send):
    worked out once per schedule (evaluations of one schedule with several costs reuse it)."""
    hit = _DEPS.get(id(schedule))
    if hit is not None and hit[0] is schedule:
        return hit[1]
    place = schedule.placement
    out = {(r, a): tuple((d, place[d.stage] != r) for d in dependencies(a, schedule))
           for r, acts in schedule.actions.items() for a in acts}
    if len(_DEPS) >= 64:
        _DEPS.clear()
    _DEPS[id(schedule)] = (schedule, out)
    return out


_INDEX: dict[int, tuple[Schedule, list | None]] = {}  # id(schedule) -> (schedule, rank_ends' dependencies)


def _indexed(schedule: Schedule) -> list | None:
    """Per rank, per action: its dependencies as (rank, position) pairs; None when one is
    missing from the lists (`evaluate` then explains the deadlock)."""
    hit = _INDEX.get(id(schedule))
    if hit is not None and hit[0] is schedule:
        return hit[1]
    pos = {a: (r, i) for r, acts in schedule.actions.items() for i, a in enumerate(acts)}
    out: list | None = []
    try:
        for r in range(schedule.pp):
            out.append([tuple(pos[d] for d in dependencies(a, schedule)) for a in schedule.actions.get(r, ())])
    except KeyError:
        out = None
    if len(_INDEX) >= 64:
        _INDEX.clear()
    _INDEX[id(schedule)] = (schedule, out)
    return out


def rank_ends(schedule: Schedule, costs: list[list[float]]) -> list[list[float]]:
    """`evaluate(schedule, cost)`'s end times, by rank and position, where `costs[r][i]`
    is the cost of rank r's i-th action (no communication, no overlapped pairs): the same
    floats, from lists instead of dicts of actions (the breakdown evaluates a schedule per
    simulation). Raises ScheduleError as `evaluate` does."""
    deps = _indexed(schedule)
    if deps is None:
        evaluate(schedule)  # raises: an action waits for one that never runs
        raise AssertionError("unreachable")
    pp = schedule.pp
    ends: list[list[float]] = [[-1.0] * len(d) for d in deps]
    ptr, free = [0] * pp, [0.0] * pp
    total, done = sum(len(d) for d in deps), 0
    while done < total:
        progressed = False
        for r in range(pp):
            dr, er, cr, i, n, f = deps[r], ends[r], costs[r], ptr[r], len(deps[r]), free[r]
            while i < n:
                ready = f
                for q, j in dr[i]:
                    t = ends[q][j]
                    if t < 0.0:
                        break
                    if t > ready:
                        ready = t
                else:
                    f = er[i] = ready + cr[i]
                    i += 1
                    done += 1
                    progressed = True
                    continue
                break
            ptr[r], free[r] = i, f
        if not progressed:
            evaluate(schedule)  # raises the deadlock
            raise AssertionError("unreachable")
    return ends


def format_grid(
    schedule: Schedule, mark: tuple[int, int] | None = None, context: int | None = None
) -> str:
    """Step x rank grid; `mark=(rank, index)` brackets one action as >>2F0<<.

    With `context`, only the steps within `context` of the marked step are shown (the rest
    are elided with "..."), so errors in long schedules stay readable.
    """
    width = max(len(repr(a)) for acts in schedule.actions.values() for a in acts) if any(
        schedule.actions.values()
    ) else 3
    width += 4
    steps = max((len(v) for v in schedule.actions.values()), default=0)
    lo, hi = 0, steps
    if context is not None and mark is not None:
        lo, hi = max(0, mark[1] - context), min(steps, mark[1] + context + 1)
    lines = ["step  " + "".join(f"rank {r}".ljust(width) for r in range(schedule.pp))]
    if lo > 0:
        lines.append(f"... ({lo} earlier steps)")
    for i in range(lo, hi):
        cells = []
        for r in range(schedule.pp):
            acts = schedule.actions.get(r, ())
            text = repr(acts[i]) if i < len(acts) else "."
            if mark == (r, i):
                text = f">>{text}<<"
            cells.append(text.ljust(width))
        lines.append((f"{i:<6}" + "".join(cells)).rstrip())
    if hi < steps:
        lines.append(f"... ({steps - hi} later steps)")
    return "\n".join(lines)


GRID_CONTEXT = 12  # steps shown either side of the marked action in error messages


def _fail(schedule: Schedule, msg: str, mark: tuple[int, int] | None) -> ScheduleError:
    grid = format_grid(schedule, mark, GRID_CONTEXT if mark is not None else None)
    return ScheduleError(f"schedule {schedule.name!r}: {msg}\n{grid}")


def check_structure(schedule: Schedule) -> None:
    S, m = schedule.num_stages, schedule.microbatches
    split = schedule.split_backward
    seen: dict[Action, tuple[int, int]] = {}
    stray = sorted(r for r in schedule.actions if not 0 <= r < schedule.pp)
    if stray:
        raise _fail(schedule, f"actions for rank {stray[0]}, but there are only {schedule.pp} ranks", None)
    if len(schedule.placement) != S or any(not 0 <= r < schedule.pp for r in schedule.placement):
        raise _fail(schedule, f"placement {schedule.placement} does not map {S} stages onto {schedule.pp} ranks", None)
    c = schedule.chains
    if c < 1 or S % c or m % c:
        raise _fail(schedule, f"{c} chains must divide the {S} stages and the {m} micro-batches", None)
    for r in range(schedule.pp):
        for i, a in enumerate(schedule.actions.get(r, ())):
            if not (0 <= a.stage < S) or not (0 <= a.microbatch < m):
                raise _fail(schedule, f"action {a!r} is outside {S} stages x {m} micro-batches", (r, i))
            if schedule.placement[a.stage] != r:
                raise _fail(
                    schedule,
                    f"action {a!r} runs on rank {r} but stage {a.stage} is placed on rank {schedule.placement[a.stage]}",
                    (r, i),
                )
            if not schedule.on_route(a.stage, a.microbatch):
                k = schedule.chain_of(a.microbatch) * schedule.chain_length
                raise _fail(schedule, f"action {a!r} is off micro-batch {a.microbatch}'s route "
                            f"(stages {k}-{k + schedule.chain_length - 1})", (r, i))
            if a in seen:
                raise _fail(schedule, f"action {a!r} runs twice", (r, i))
            if a.kind == "B" and Action(a.stage, "F", a.microbatch) not in seen:
                raise _fail(schedule, f"{a!r} runs before its forward {a.stage}F{a.microbatch}", (r, i))
            if a.kind == "W" and Action(a.stage, "B", a.microbatch) not in seen:
                raise _fail(schedule, f"{a!r} runs before its backward {a.stage}B{a.microbatch}", (r, i))
            seen[a] = (r, i)
    kinds = ("F", "B", "W") if split and not schedule.mixed else ("F", "B")
    for s in range(S):
        for mb in range(m):
            if not schedule.on_route(s, mb):
                continue
            for k in kinds:
                if Action(s, k, mb) not in seen:
                    raise _fail(schedule, f"action {s}{k}{mb} never runs", None)
    for r, i in sorted(schedule.overlapped):
        acts = schedule.actions.get(r, ())
        if not 0 <= i < len(acts) - 1:
            raise _fail(schedule, f"overlapped pair at rank {r} step {i} has no second action", None)
        a, b = acts[i], acts[i + 1]
        if a in dependencies(b, schedule) or (b.kind != "F" and a.stage == b.stage and a.microbatch == b.microbatch):
            raise _fail(schedule, f"{a!r}&{b!r} cannot overlap: {b!r} needs {a!r}", (r, i + 1))


@dataclass(frozen=True)
class Evaluation:
    start: dict[Action, float]
    end: dict[Action, float]
    makespan: float
    busy: dict[int, float]

    @property
    def bubble_fraction(self) -> float:
        """Idle share of the ranks over the makespan: 1 - sum(busy) / (pp * makespan)."""
        if self.makespan <= 0:
            return 0.0
        return 1.0 - sum(self.busy.values()) / (len(self.busy) * self.makespan)


def evaluate(
    schedule: Schedule,
    cost: Callable[[Action], float] = lambda a: 1.0,
    comm: float = 0.0,
    overlap_cost: Callable[[Action, Action], float] | None = None,
) -> Evaluation:
    """Run the per-rank lists in order with the given action costs; raise on deadlock.

    `comm` is added to every cross-rank dependency (a send between ranks). With
    `overlap_cost`, an overlapped pair (DualPipe's F&B) starts when both its actions may
    and takes `overlap_cost(a, b)`; without it the pair runs one action after the other.
    """
    fused = schedule.overlapped if overlap_cost is not None else frozenset()
    end: dict[Action, float] = {}
    start: dict[Action, float] = {}
    ptr = {r: 0 for r in range(schedule.pp)}
    free = {r: 0.0 for r in range(schedule.pp)}
    busy = {r: 0.0 for r in range(schedule.pp)}
    total = sum(len(v) for v in schedule.actions.values())
    done = 0
    deps = _rank_dependencies(schedule)
    while done < total:
        progressed = False
        for r in range(schedule.pp):
            acts = schedule.actions.get(r, ())
            while ptr[r] < len(acts):
                pair = (r, ptr[r]) in fused
                group = acts[ptr[r]:ptr[r] + (2 if pair else 1)]
                ready = free[r]
                ok = True
                for d, cross in (dc for a in group for dc in deps[(r, a)]):
                    t = end.get(d)
                    if t is None:
                        ok = False
                        break
                    if cross:
                        t += comm
                    if t > ready:
                        ready = t
                if not ok:
                    break
                c = overlap_cost(*group) if pair else cost(group[0])
                for a in group:
                    start[a], end[a] = ready, ready + c
                free[r] = ready + c
                busy[r] += c
                ptr[r] += len(group)
                done += len(group)
                progressed = True
        if not progressed:
            blocked = [r for r in range(schedule.pp) if ptr[r] < len(schedule.actions.get(r, ()))]
            # mark the blocked action at the earliest step: usually the misplaced one
            stuck = min(blocked, key=lambda r: (ptr[r], r))
            a = schedule.actions[stuck][ptr[stuck]]
            missing = [d for d in dependencies(a, schedule) if d not in end]
            heads = ", ".join(f"rank {r} at {schedule.actions[r][ptr[r]]!r}" for r in blocked)
            raise _fail(
                schedule,
                f"deadlock: {a!r} on rank {stuck} waits for {', '.join(map(repr, missing))}, "
                f"which can never run first (blocked: {heads})",
                (stuck, ptr[stuck]),
            )
    return Evaluation(start, end, max(end.values(), default=0.0), busy)


def validate(schedule: Schedule) -> None:
    """Raise ScheduleError unless `schedule` obeys every rule in this module's docstring."""
    check_structure(schedule)
    evaluate(schedule)


def peak_in_flight(schedule: Schedule, release: str | None = None) -> dict[int, int]:
    """Most (stage, micro-batch) activations held at once per rank.

    An activation lives from its F until its `release` action: by default the action that
    ends its backward (`Schedule.releases`: B for schedules without W, W for split-backward
    schedules (the weight gradient needs the stage's saved
    inputs, so most of the activation memory outlives B; counting F..W is what makes
    ZB-H1's peak equal 1F1B's, Qi et al. 2023 §3.1). Each count is one micro-batch
    through ONE chunk; divide by vp for whole-rank micro-batch equivalents. Overlapped
    pairs as `live_peak` counts them.
    """
    return {r: round(live_peak(schedule, r, lambda _stage: 1.0, release)) for r in range(schedule.pp)}


def live_peak(schedule: Schedule, rank: int, size: Callable[[int], float], release: str | None = None) -> float:
    """Largest sum of `size(stage)` over the activations alive at once on `rank` (born at an
    F, freed by `release` or the action that ends the backward, as `peak_in_flight`).

    An overlapped pair (F, B) whose B ends its backward runs in lockstep, layer by layer, the
    B freeing each of its layers as the F stores one (Megatron-Core's combined 1F1B pops a
    backward layer per forward layer, TransformerLayerSchedulePlan.run; DualPipe's
    overlapped forward-backward likewise): the pair adds only what the F's chunk holds
    beyond the B's (equal chunks: nothing but the one layer in flight, not counted).
    """
    frees = (lambda x: x.kind == release) if release else schedule.releases
    acts = schedule.actions.get(rank, ())
    live = peak = 0.0
    for i, a in enumerate(acts):
        if a.kind == "F":
            if (rank, i) in schedule.overlapped and frees(acts[i + 1]):
                peak = max(peak, live + max(0.0, size(a.stage) - size(acts[i + 1].stage)))
            else:
                peak = max(peak, live + size(a.stage))
            live += size(a.stage)
        elif frees(a):
            live -= size(a.stage)
    return peak
