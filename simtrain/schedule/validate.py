"""Check any schedule, and evaluate it with per-kind uniform costs (no simpy).

Rules (the same whichever generator or file the schedule came from):
- every action's stage is a valid virtual stage placed on the rank that runs it;
- every (stage, micro-batch) runs F exactly once and B exactly once; W exactly once
  if the schedule splits the backward, never otherwise;
- on its rank F comes before B, and B before W;
- cross-stage dependencies are satisfiable: F(s, m) needs F(s-1, m), B(s, m) needs
  B(s+1, m) (or F(s, m) on the last stage), W(s, m) needs B(s, m). Executing the
  per-rank lists in order must never deadlock.
On failure the error shows the step x rank grid with the first bad action marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simtrain.scenario.errors import SimtrainError
from simtrain.schedule.action import Action, Schedule


class ScheduleError(SimtrainError):
    """A schedule that breaks a rule; the message's first line says which."""


def dependencies(a: Action, num_stages: int) -> tuple[Action, ...]:
    """The actions that must finish before `a` may start (cross-stage and same-stage)."""
    if a.kind == "F":
        return (Action(a.stage - 1, "F", a.microbatch),) if a.stage > 0 else ()
    if a.kind == "B":
        if a.stage == num_stages - 1:
            return (Action(a.stage, "F", a.microbatch),)
        return (Action(a.stage + 1, "B", a.microbatch), Action(a.stage, "F", a.microbatch))
    return (Action(a.stage, "B", a.microbatch),)


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
            if a in seen:
                raise _fail(schedule, f"action {a!r} runs twice", (r, i))
            if a.kind == "B" and Action(a.stage, "F", a.microbatch) not in seen:
                raise _fail(schedule, f"{a!r} runs before its forward {a.stage}F{a.microbatch}", (r, i))
            if a.kind == "W" and Action(a.stage, "B", a.microbatch) not in seen:
                raise _fail(schedule, f"{a!r} runs before its backward {a.stage}B{a.microbatch}", (r, i))
            seen[a] = (r, i)
    kinds = ("F", "B", "W") if split else ("F", "B")
    for s in range(S):
        for mb in range(m):
            for k in kinds:
                if Action(s, k, mb) not in seen:
                    raise _fail(schedule, f"action {s}{k}{mb} never runs", None)


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
) -> Evaluation:
    """Run the per-rank lists in order with the given action costs; raise on deadlock.

    `comm` is added to every cross-rank dependency (a send between ranks).
    """
    S = schedule.num_stages
    end: dict[Action, float] = {}
    start: dict[Action, float] = {}
    ptr = {r: 0 for r in range(schedule.pp)}
    free = {r: 0.0 for r in range(schedule.pp)}
    busy = {r: 0.0 for r in range(schedule.pp)}
    total = sum(len(v) for v in schedule.actions.values())
    done = 0
    while done < total:
        progressed = False
        for r in range(schedule.pp):
            acts = schedule.actions.get(r, ())
            while ptr[r] < len(acts):
                a = acts[ptr[r]]
                ready = free[r]
                ok = True
                for d in dependencies(a, S):
                    t = end.get(d)
                    if t is None:
                        ok = False
                        break
                    if schedule.placement[d.stage] != r:
                        t += comm
                    ready = max(ready, t)
                if not ok:
                    break
                c = cost(a)
                start[a], end[a] = ready, ready + c
                free[r] = ready + c
                busy[r] += c
                ptr[r] += 1
                done += 1
                progressed = True
        if not progressed:
            blocked = [r for r in range(schedule.pp) if ptr[r] < len(schedule.actions.get(r, ()))]
            # mark the blocked action at the earliest step: usually the misplaced one
            stuck = min(blocked, key=lambda r: (ptr[r], r))
            a = schedule.actions[stuck][ptr[stuck]]
            missing = [d for d in dependencies(a, S) if d not in end]
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

    An activation lives from its F until its `release` action: "B" for schedules without
    W, "W" for split-backward schedules (the weight gradient needs the stage's saved
    inputs, so most of the activation memory outlives B; counting F..W is what makes
    ZB-H1's peak equal 1F1B's, Qi et al. 2023 §3.1). Each count is one micro-batch
    through ONE chunk; divide by vp for whole-rank micro-batch equivalents.
    """
    release = release or ("W" if schedule.split_backward else "B")
    out = {}
    for r in range(schedule.pp):
        live = peak = 0
        for a in schedule.actions.get(r, ()):
            if a.kind == "F":
                live += 1
                peak = max(peak, live)
            elif a.kind == release:
                live -= 1
        out[r] = peak
    return out
