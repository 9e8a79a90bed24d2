"""A pipeline rank's action list as the engine walks it, worked out once per rank."""

from __future__ import annotations

from simtrain.engine.plan import Plan, StageWork
from simtrain.schedule import Action

Step = tuple[Action, StageWork, int, str, "str | None", bool, bool, bool, bool]


def rank_steps(plan: Plan, rank: int, overlap_ep: bool) -> list[Step]:
    """Pipeline rank `rank`'s actions with what `Engine.device` asks of each (every device
    of the rank walks the same list; in per-rank mode thousands do): (action, its stage's
    work, micro-batch, kind, label of the wait for its input or None when it waits for
    nothing, whether it ends its route (F: on the last stage, B: on the first), whether a
    B is a full backward (no W of its own), whether it opens an overlapped pair (with
    `overlap_ep`), whether it ends one)."""
    sch = plan.schedule
    out: list[Step] = []
    for i, a in enumerate(sch.actions[rank]):
        mb, kind = a.microbatch, a.kind
        if kind == "F":
            wait, end = (None if sch.is_first(a.stage) else f"F{mb}"), sch.is_last(a.stage)
        else:
            wait, end = (None if sch.is_last(a.stage) else f"B{mb}"), sch.is_first(a.stage)
        out.append((a, plan.stages[a.stage], mb, kind, wait, end, not sch.has_w(a.stage, mb),
                    (rank, i) in sch.overlapped and overlap_ep, (rank, i - 1) in sch.overlapped))
    return out
