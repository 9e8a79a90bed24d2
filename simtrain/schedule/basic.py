"""GPipe and 1F1B: the two non-interleaved schedules. Pure functions, no simpy.

GPipe (Huang et al. 2019): every rank runs all forwards, then all backwards.
1F1B (PipeDream-Flush, Narayanan et al. 2021): rank r runs min(p-r-1, m) warm-up
forwards, then alternates one forward and one backward, then drains the backwards.
With uniform costs and free communication both idle (p-1)/(m+p-1) of the step, but
1F1B keeps at most min(p-r, m) micro-batches in flight on rank r instead of m.
"""

from __future__ import annotations

from simtrain.schedule.action import Action


def gpipe(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        fwd = [Action(r, "F", i) for i in range(microbatches)]
        bwd = [Action(r, "B", i) for i in range(microbatches)]
        out[r] = fwd + bwd
    return out


def one_f_one_b(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    m = microbatches
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        warm = min(pp - r - 1, m)
        acts = [Action(r, "F", i) for i in range(warm)]
        for i in range(m - warm):
            acts += [Action(r, "F", warm + i), Action(r, "B", i)]
        acts += [Action(r, "B", i) for i in range(m - warm, m)]
        out[r] = acts
    return out
