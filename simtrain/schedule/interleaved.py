"""Multi-chunk ("virtual stage") schedules: interleaved 1F1B, Llama 3's flexible N, looped BFS.

Every rank r holds vp model chunks; chunk c of rank r is virtual stage c * pp + r (the
looped placement of `action.looped_placement`). Pure functions, no simpy.

Depth-first / interleaved 1F1B (Narayanan et al. 2021, "Efficient Large-Scale Language
Model Training on GPU Clusters Using Megatron-LM", §2.2.2; Megatron-LM's
`forward_backward_pipelining_with_interleaving`): a rank pushes N = pp micro-batches
through chunk 0, then the same N through chunk 1, ..., then the next N micro-batches.
After a warm-up of  2 * (pp - r - 1) + (vp - 1) * N  forwards it alternates one forward
and one backward; backwards visit the chunks in reverse. With M a multiple of pp, uniform
costs and free comm the bubble shrinks from (p-1)/(m+p-1) to (p-1)/(v*m+p-1).

Flexible N (Llama 3 paper, Dubey et al. 2024, §3.3.2 and Figure 6; Megatron-LM's
`microbatch_group_size_per_vp_stage`): the same schedule with the group size N a free
parameter, so M need not be a multiple of pp. The micro-batches are cut into groups of N
(the last group holds the remainder); N = pp is depth-first, N = M runs every micro-batch
through a chunk before the next chunk (breadth-first forwards, then a 1F1B drain).

Looped breadth-first (Lamy-Poirier 2023, "Breadth-First Pipeline Parallelism",
arXiv:2211.05953; PyTorch's `ScheduleLoopedBFS`): every rank runs all M forwards of
chunk 0, then of chunk 1, ..., then all backwards chunk by chunk in reverse. Memory is
GPipe's (M micro-batches per chunk in flight) but the bubble is the interleaved one.
"""

from __future__ import annotations

from simtrain.schedule.action import Action
from simtrain.schedule.basic import gpipe, one_f_one_b
from simtrain.schedule.constraints import llama3_default_n


def schedule_table(microbatches: int, vp: int, n: int) -> list[tuple[int, int]]:
    """Forward order on every rank as (micro-batch, chunk) pairs, groups of `n` micro-batches.

    Example M=5, vp=2, n=3 (the example in Megatron-LM's comments):
    micro-batch 0 1 2 0 1 2 3 4 3 4
    chunk       0 0 0 1 1 1 0 0 1 1
    """
    table: list[tuple[int, int]] = []
    for lo in range(0, microbatches, n):
        group = range(lo, min(lo + n, microbatches))  # last group holds the remainder
        table += [(mb, chunk) for chunk in range(vp) for mb in group]
    return table


def warmup_forwards(pp: int, rank: int, microbatches: int, vp: int, n: int) -> int:
    """Forwards before rank `rank`'s first backward (Megatron-LM's rule, capped at vp*M).

    The last rank needs (vp-1)*n forwards before its first backward's input exists
    (micro-batch 0 must reach the last chunk); each hop towards rank 0 adds 2, one for the
    forward travelling down and one for the gradient travelling back.
    """
    return min(2 * (pp - rank - 1) + (vp - 1) * n, vp * microbatches)


def flexible_interleaved(pp: int, microbatches: int, vp: int, n: int, extra_warmup: int = 0) -> dict[int, list[Action]]:
    """Interleaved 1F1B with `n` contiguous micro-batches per chunk (Llama 3 §3.3.2).

    vp = 1 has nothing to interleave and returns plain 1F1B (whose warm-up is pp-r-1,
    not Megatron's interleaved 2*(pp-r-1), so it holds fewer activations).
    Runs without deadlock when `constraints.llama3_n_ok(pp, M, n)`. `extra_warmup` more
    forwards before each rank's first backward (Megatron-Core's expert-parallel overlap: 1;
    vp > 1 only).
    """
    m = microbatches
    if vp == 1:
        return one_f_one_b(pp, m)
    table = schedule_table(m, vp, n)
    total = vp * m  # forwards (and backwards) per rank
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        warm = min(warmup_forwards(pp, r, m, vp, n) + extra_warmup, total)

        def fwd(k: int) -> Action:
            mb, chunk = table[k]
            return Action(chunk * pp + r, "F", mb)

        def bwd(k: int) -> Action:
            # the k-th backward mirrors the k-th forward with the chunk order reversed
            mb, chunk = table[k]
            return Action((vp - 1 - chunk) * pp + r, "B", mb)

        acts = [fwd(k) for k in range(warm)]
        for k in range(total - warm):  # steady state: one forward, then one backward
            acts += [fwd(warm + k), bwd(k)]
        acts += [bwd(k) for k in range(total - warm, total)]
        out[r] = acts
    return out


def interleaved(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    """Megatron-LM's interleaved 1F1B: the flexible schedule with N = pp (needs pp | M)."""
    return flexible_interleaved(pp, microbatches, vp, pp)


def interleaved_ep_overlap(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list]:
    """Interleaved 1F1B with Megatron-Core's expert-parallel all-to-all overlap
    (`--overlap-moe-expert-parallel-comm`, the "combined 1F1B" of
    megatron/core/pipeline_parallel/combined_1f1b.py): in the steady state each forward and
    the backward that follows it, of two different micro-batches, run as one overlapped
    pair (`F&B`, as DualPipe's), so that one's dispatch and combine hide behind the other's
    compute (not when the backward is of the forward's own micro-batch, which it needs).
    With vp > 1 each rank runs one forward more in its warm-up than `interleaved`, as
    Megatron-Core does under the overlap (schedules.py: "num_warmup_microbatches += 1"), so
    that every steady-state forward has a backward of another micro-batch to pair with; the
    pair holds no more activations than one chunk (`peak_in_flight`: in lockstep), so the
    peak is `interleaved`'s, the bubble a little different. Without pipelining (pp = vp = 1)
    Megatron-Core runs combined_1f1b_schedule_for_no_pipelining: the first forward alone,
    then F(k+1) & B(k) for k < M-1, then the last backward alone. vp = 1 with pp > 1 is
    refused (constraints.interleaved_ep_overlap), as Megatron-Core refuses it."""
    if pp == 1 and vp == 1 and microbatches > 1:
        f, b = (lambda k: Action(0, "F", k)), (lambda k: Action(0, "B", k))
        return {0: [f(0), *[(f(k + 1), b(k)) for k in range(microbatches - 1)], b(microbatches - 1)]}
    out: dict[int, list] = {}
    for r, acts in flexible_interleaved(pp, microbatches, vp, pp, extra_warmup=1).items():
        steps: list = []
        i = 0
        while i < len(acts):
            a, b = acts[i], acts[i + 1] if i + 1 < len(acts) else None
            # a backward never overlaps a forward of its own micro-batch (it needs it)
            if b is not None and a.kind == "F" and b.kind == "B" and a.microbatch != b.microbatch:
                steps.append((a, b))
                i += 2
            else:
                steps.append(acts[i])
                i += 1
        out[r] = steps
    return out


def llama3(
    pp: int, microbatches: int, vp: int = 1, n: int | None = None, **_: object
) -> dict[int, list[Action]]:
    """Llama 3's flexible interleaved 1F1B; `n` is the scenario's `schedule.n`.

    Default N: pp when pp divides M (then this IS `interleaved`), else the smallest valid
    N above pp (see `constraints.llama3_default_n`; pp=4, M=10 -> N=5 as in Figure 6).
    """
    n = llama3_default_n(pp, microbatches) if n is None else n
    return flexible_interleaved(pp, microbatches, vp, n)


def looped_bfs(pp: int, microbatches: int, vp: int = 1, **_: object) -> dict[int, list[Action]]:
    """Breadth-first: all micro-batches through each chunk, forwards then backwards.

    Backwards run in micro-batch order 0..M-1 (PyTorch's ScheduleLoopedBFS runs them in
    reverse; with uniform costs both give the same makespan). vp = 1 is GPipe.
    """
    if vp == 1:
        return gpipe(pp, microbatches)
    out: dict[int, list[Action]] = {}
    for r in range(pp):
        stages = [c * pp + r for c in range(vp)]
        acts = [Action(s, "F", mb) for s in stages for mb in range(microbatches)]
        acts += [Action(s, "B", mb) for s in reversed(stages) for mb in range(microbatches)]
        out[r] = acts
    return out
