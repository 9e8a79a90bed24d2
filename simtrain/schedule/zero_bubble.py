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


def interleaved_zb(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    """Interleaved zero bubble, ZB1P over vp chunks, as PyTorch's
    `ScheduleInterleavedZeroBubble` generates it (torch.distributed.pipelining).

    Micro-batches run in rounds of N = M // max(1, M // pp) through each chunk (the looped
    placement of `interleaved`); rank r warms up with (vp-1)*N + (pp-1-r) forwards (one per
    hop where interleaved 1F1B needs two, because B no longer waits for W), then alternates
    F and B (input gradient), holding back r weight-gradient passes (ZB-H1's rule), and
    runs the held-back W in the cool-down. PyTorch pads its lists with idle slots; here
    the engine waits on dependencies instead, so the order is the same without them.
    vp = 1 is ZB-H1.
    """
    m = microbatches
    per_round = m // max(1, m // pp)
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        warm = min((vp - 1) * per_round + (pp - 1 - r), m * vp)

        def f_stage(op: int) -> int:
            return ((op // per_round) % vp) * pp + r

        def b_stage(op: int) -> int:
            return (vp - 1 - ((op - warm) // per_round) % vp) * pp + r

        count: dict[tuple[str, int], int] = {}

        def act(stage: int, kind: str) -> Action:
            k = count.get((kind, stage), 0)
            count[(kind, stage)] = k + 1
            return Action(stage, kind, k)

        acts: list[Action] = []
        backward_ops: list[int] = []
        w_done = 0
        for op in range(m * vp + warm):  # warm-up F, then F+B pairs, then cool-down B
            if op < warm:
                acts.append(act(f_stage(op), "F"))
                continue
            if op < m * vp:
                acts.append(act(f_stage(op), "F"))
            acts.append(act(b_stage(op), "B"))
            backward_ops.append(op)
            if op - warm >= r:  # rank r holds back r weight-gradient passes
                acts.append(act(b_stage(backward_ops[w_done]), "W"))
                w_done += 1
        for op in backward_ops[w_done:]:
            acts.append(act(b_stage(op), "W"))
        out[r] = acts
    return out


def zb_v(pp: int, microbatches: int, vp: int = 2, **_: object) -> dict[int, list[Action]]:
    """ZB-V (Qi et al. 2024, "Pipeline Parallelism with Controllable Memory" / the zero
    bubble paper's V schedule): two chunks per rank in a V (`action.v_placement`: rank r
    holds stages r and 2pp-1-r), as PyTorch's `ScheduleZBVZeroBubble` generates it.

    Rank r: 2(pp-r)-1 forwards of chunk 0; r pairs (F chunk 1, F chunk 0); pp-r triples
    (F, B, W of chunk 1); then the steady state F0 B0 W0 F1 B1 W1 until every forward
    ran; cool-down: r pairs (B0, B1), pp-r pairs (B0, W0), then the remaining W of chunk
    1 and chunk 0. PyTorch generates max(2pp-1, M) micro-batches and drops those >= M;
    so does this.
    """
    m = microbatches
    n = max(2 * pp - 1, m)
    S = 2 * pp
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        s0, s1 = r, S - 1 - r
        nxt = {("F", 0): 0, ("F", 1): 0, ("B", 0): 0, ("B", 1): 0}
        acts: list[Action] = []

        def put(kind: str, chunk: int, mb: int | None = None) -> None:
            if mb is None:
                mb = nxt[(kind, chunk)]
                nxt[(kind, chunk)] = mb + 1
            acts.append(Action((s0, s1)[chunk], kind, mb))

        for _ in range(2 * (pp - r) - 1):
            put("F", 0)
        for _ in range(r):
            put("F", 1)
            put("F", 0)
        def backward(chunk: int) -> None:  # B, then its W at once
            b = nxt[("B", chunk)]
            put("B", chunk)
            put("W", chunk, b)

        for _ in range(pp - r):
            put("F", 1)
            backward(1)
        while nxt[("F", 1)] < nxt[("F", 0)] or nxt[("F", 0)] < n:
            if nxt[("F", 0)] < n:
                put("F", 0)
            backward(0)
            put("F", 1)
            backward(1)
        w0, w1 = nxt[("B", 0)], nxt[("B", 1)]
        for _ in range(r):
            put("B", 0)
            put("B", 1)
        for _ in range(pp - r):
            put("B", 0)
            put("W", 0, w0)
            w0 += 1
        for mb in range(w1, nxt[("B", 1)]):
            put("W", 1, mb)
        for mb in range(w0, nxt[("B", 0)]):
            put("W", 0, mb)
        out[r] = [a for a in acts if a.microbatch < m]
    return out
