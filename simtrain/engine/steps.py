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


def engine_walk(engine, rank: int, tpt: float | None) -> list[tuple]:
    """`rank_steps` with what `Engine.device` works out alike for every device of the rank
    whose TP collectives take `tpt` each (None: not coalesced), once per rank: (action,
    stage work, stage, micro-batch, kind, wait label, end, full, opens a pair, ends a pair,
    the stage's full backwards and weight passes up to this one included (every device
    walks the same list from none: the count it would keep), whether it is the stage's
    first forward (the one its parameter all-gather may hold up), DeepSpeed's pipe work or
    None, the action's label, its key for a TP group's span, and whether the action is one
    TP group's span (`Engine.forward` / `backward` would take their coalesced path:
    no mixture of experts, no DeepSpeed v0.3 ZeRO-3 (zero3sync), collectives inside the layers, and for a backward neither head
    nor embedding nor the stage's last backward)."""
    plan = engine.plan
    m = plan.schedule.stage_microbatches
    counts: dict[int, int] = {}
    forwards: set[int] = set()
    out = []
    for a, st, mb, kind, wait, end, full, opens, closes in rank_steps(plan, rank, engine.overlap_ep):
        stage = a.stage
        if kind == "W" or (kind == "B" and full):
            counts[stage] = counts.get(stage, 0) + 1
        count = counts.get(stage, 0)
        first = kind == "F" and stage not in forwards
        if first:
            forwards.add(stage)
        lc = st.layer
        # (Engine.forward's and Engine.backward's conditions for their coalesced path)
        coalesced = tpt is not None and st.moe is None and not engine.z3 and not (engine._fast(lc) and not engine.fsdp)
        if kind == "F":
            span = coalesced
        elif kind == "B":
            span = coalesced and not st.head and not st.embed and not (full and count == m)
        else:
            span = False
        out.append((a, st, stage, mb, kind, wait, end, full, opens, closes, count, first,
                    engine.pipe_work.get((stage, kind)), engine._label(a), (kind, id(a)), span))
    return out
