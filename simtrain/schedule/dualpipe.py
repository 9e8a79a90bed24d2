"""DualPipe (DeepSeek-V3 technical report, arXiv:2412.19437, §3.2.1 and Figure 5) and its
cut-in-half V variant DualPipeV, as deepseek-ai/DualPipe's `DualPipe.step` and
`DualPipeV.step` (and PyTorch's `ScheduleDualPipeV`) order them. Pure functions, no simpy.

DualPipe feeds micro-batches from both ends of the pipeline. The model is cut into pp
stages and every rank holds two of them, stage r and stage pp-1-r, so each stage exists
twice (2x parameters). Here that is two *chains* of virtual stages (`action.Schedule`):
stages 0..pp-1 carry the first M/2 micro-batches from rank 0 to rank pp-1, stages
pp..2pp-1 (model stage j at virtual stage pp+j, on rank pp-1-j) carry the other M/2 back
from rank pp-1 to rank 0; the placement is the V of `action.v_placement`.

Rank r with n = pp/2 "half ranks" and h = min(r, pp-1-r) (phase 0 is the direction that
starts on the rank's own side of the pipeline):
    1. 2(n-h-1) forwards of phase 0        2. h+1 pairs F0 F1
    3. n-h-1 triples B1 (W deferred), W, F1 4. C-2n+h+1 pairs F0&B1, F1&B0 (C = M/2)
    5. n-h-1 pairs B1, F1&B0                6. h+1 pairs B1 B0 (W deferred from the middle on)
    7. n-h-1 pairs W, B0 (W deferred)       8. h+1 W
`&` marks the overlapped forward and backward chunks of two micro-batches, the pairs
whose all-to-all hides behind the other's compute; on the two middle ranks the first
pair of step 4 runs one after the other ("to further reduce bubble size"). A backward
whose W is not deferred is a full backward: a B with no W (the schedule is `mixed`).
DualPipeV is the same with n = pp ranks, h = r, C = M and one chain
over 2pp V-placed stages (each stage once: 1x parameters, twice the chunks per rank).

With per-chunk costs F, B (full backward), W and F&B (the overlapped pair), DeepSeek's
table gives every rank the bubble (PP/2 - 1)(F&B + B - 3W) for DualPipe, PP = pp, and
the same with PP = 2pp stages for DualPipeV.
"""

from __future__ import annotations

from collections import deque

from simtrain.schedule.action import Action

Step = Action | tuple[Action, Action]  # a tuple is an overlapped pair (F&B)


def _rank_order(n: int, h: int, chunks: int, stage: tuple[int, int], mb0: tuple[int, int],
                middle: bool) -> list[Step]:
    """One rank's order; `stage[p]`, `mb0[p]`: the stage and first micro-batch of phase p."""
    count_f, count_b = [0, 0], [0, 0]
    deferred: deque[Action] = deque()
    out: list[Step] = []

    def fwd(p: int) -> Action:
        a = Action(stage[p], "F", mb0[p] + count_f[p])
        count_f[p] += 1
        return a

    def bwd(p: int, zb: bool) -> list[Action]:
        k = mb0[p] + count_b[p]
        count_b[p] += 1
        if zb:  # input gradient now, weight gradient deferred (WeightGradStore)
            deferred.append(Action(stage[p], "W", k))
        return [Action(stage[p], "B", k)]

    def weight() -> None:
        out.append(deferred.popleft())

    def fb(pf: int, pb: int) -> None:
        f, (b,) = fwd(pf), bwd(pb, False)
        out.append((f, b))

    out += [fwd(0) for _ in range(2 * (n - h - 1))]
    for _ in range(h + 1):
        out += [fwd(0), fwd(1)]
    for _ in range(n - h - 1):
        out += bwd(1, True)
        weight()
        out.append(fwd(1))
    for i in range(chunks - 2 * n + h + 1):
        if i == 0 and middle:
            out.append(fwd(0))
            out += bwd(1, False)
        else:
            fb(0, 1)
        fb(1, 0)
    for _ in range(n - h - 1):
        out += bwd(1, False)
        fb(1, 0)
    zb = False
    steps = h + 1
    for i in range(steps):
        if i == steps // 2 and h % 2 == 1:
            zb = True
        out += bwd(1, zb)
        if i == steps // 2 and h % 2 == 0:
            zb = True
        out += bwd(0, zb)
    for _ in range(n - h - 1):
        weight()
        out += bwd(0, True)
    for _ in range(h + 1):
        weight()
    assert not deferred, "every deferred weight gradient runs"
    return out


def dualpipe(pp: int, microbatches: int, vp: int = 2, **_: object) -> dict[int, list[Step]]:
    """DualPipe: pp even, M even and at least 2pp (`constraints.dualpipe`)."""
    half = microbatches // 2
    out = {}
    for r in range(pp):
        second = r >= pp // 2  # phase 0 is the reverse direction on the second half
        d = (1, 0) if second else (0, 1)  # direction of phase 0, phase 1
        stage = {0: r, 1: 2 * pp - 1 - r}  # direction -> this rank's stage on that chain
        out[r] = _rank_order(pp // 2, min(r, pp - 1 - r), half, (stage[d[0]], stage[d[1]]),
                             (half * d[0], half * d[1]), r in (pp // 2 - 1, pp // 2))
    return out


def dualpipe_v(pp: int, microbatches: int, vp: int = 2, **_: object) -> dict[int, list[Step]]:
    """DualPipeV: any pp, M at least 2pp (`constraints.dualpipe_v`)."""
    return {r: _rank_order(pp, r, microbatches, (r, 2 * pp - 1 - r), (0, 0), r == pp - 1) for r in range(pp)}
