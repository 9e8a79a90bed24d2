"""simtrain.engine.steps: a rank's action list as the engine walks it."""

from types import SimpleNamespace

import simtrain.schedule as S
from simtrain.engine.steps import rank_steps


def test_rank_steps_flags_follow_the_schedule() -> None:
    for name, pp, vp, m in (("1f1b", 4, 1, 8), ("zb-h1", 4, 1, 8), ("dualpipe", 4, 2, 8), ("interleaved", 2, 2, 4)):
        sch = S.build(name, pp, vp, m)
        plan = SimpleNamespace(schedule=sch, stages=[f"stage{i}" for i in range(pp * vp)])
        for rank in range(pp):
            steps = rank_steps(plan, rank, overlap_ep=True)
            assert [s[0] for s in steps] == list(sch.actions[rank])
            for i, (a, st, mb, kind, wait, end, full, opens, closes) in enumerate(steps):
                assert (st, mb, kind) == (f"stage{a.stage}", a.microbatch, a.kind)
                if kind == "F":
                    assert wait == (None if sch.is_first(a.stage) else f"F{mb}") and end == sch.is_last(a.stage)
                elif kind == "B":
                    assert wait == (None if sch.is_last(a.stage) else f"B{mb}") and end == sch.is_first(a.stage)
                assert full == (not sch.has_w(a.stage, mb))
                assert opens == ((rank, i) in sch.overlapped) and closes == ((rank, i - 1) in sch.overlapped)
            assert not any(s[7] for s in rank_steps(plan, rank, overlap_ep=False))
