"""ZB-H1, the memory-neutral zero-bubble schedule (Qi et al. 2023, "Zero Bubble Pipeline
Parallelism", arXiv:2401.10241, §3.1 and Figure 3). Pure functions, no simpy.

The backward is split into B (gradient w.r.t. the stage input, on the critical path to
the previous stage) and W (gradient w.r.t. the weights, needed by nobody downstream).
Rank r keeps 1F1B's warm-up of pp - r - 1 forwards and its F/B alternation, but holds
back up to r weight-gradient passes and runs them in the cool-down, where 1F1B idles.

Idle time per rank with pass times T_F, T_B, T_W and m >= p (paper §3.1):
    1F1B:  (p-1) * (T_F + T_B + T_W)        ZB-H1: (p-1) * (T_F + T_B - T_W)
With T_F = T_B = T_W = 1 every rank is busy 3m, so the makespans are 3m + 3(p-1) and
3m + (p-1): bubble fractions (p-1)/(m+p-1) for 1F1B and (p-1)/(3m+p-1) for ZB-H1.

Memory: W needs the stage's saved inputs and output gradients, so a micro-batch's
activations stay (mostly) alive from F until W. Rank r then holds at most
(pp - r - 1) warm-up + r held-back W + 1 = pp micro-batches, which is 1F1B's peak on
rank 0: "ZB-H1 ... the peak memory does not exceed 1F1B's" (paper §3.1).
"""

from __future__ import annotations

from collections import deque

from simtrain.schedule.action import Action


def zb_h1(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    m = microbatches
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        warm = min(pp - r - 1, m)
        hold = r  # W passes rank r may keep waiting (rank 0: none, last rank: pp-1)
        pending: deque[int] = deque()
        acts = [Action(r, "F", i) for i in range(warm)]

        def backward(i: int) -> None:
            acts.append(Action(r, "B", i))
            pending.append(i)
            if len(pending) > hold:
                acts.append(Action(r, "W", pending.popleft()))

        for i in range(m - warm):  # steady state: F, B (and W once `hold` are waiting)
            acts.append(Action(r, "F", warm + i))
            backward(i)
        for i in range(m - warm, m):  # cool-down backwards
            backward(i)
        acts += [Action(r, "W", i) for i in pending]  # the held-back W fill the tail
        out[r] = acts
    return out
