"""Phase 1 of `simtrain search`, run by the executors like any sweep point: plan, memory
estimate and an upper bound on MFU from compute alone (rule 4 in simtrain.explore.search),
without simulating. The search asks the executors for kind "bound"; they import this
module, never the search."""

from __future__ import annotations

import hashlib
from typing import Any

from simtrain.explore.sweep.evaluate import plan_row, sim_key


def step_time_bound(plan) -> float:
    """Lower bound on the step time from compute alone (rule 4 in simtrain.explore.search)."""
    L = plan.layout
    sched = plan.schedule
    M = sched.stage_microbatches  # micro-batches through each stage (M / chains)
    split = sched.split_backward
    F, B, W, R = {}, {}, {}, {}
    for st in plan.stages:
        lc, ends = st.layer, [e for e in (st.embed, st.head) if e]
        F[st.index] = st.layers * (lc.fwd[0] + lc.fwd[1]) + sum(e.fwd for e in ends)
        B[st.index] = st.layers * (lc.bwd_input[0] + lc.bwd_input[1]) + sum(e.bwd_input for e in ends)
        W[st.index] = st.layers * lc.bwd_weight + sum(e.bwd_weight for e in ends)
        R[st.index] = st.layers * lc.recompute
    best = 0.0
    for r in range(L.pp):
        mine = [v for v in range(len(plan.stages)) if sched.placement[v] == r]
        if not mine:
            continue
        # forwards that must run before this rank's first stage can start, backwards that
        # must run after its last backward: the stages before it on its route (the
        # smallest over the rank's stages, since a rank may start on either chain)
        heads = [v - v % sched.chain_length for v in mine]
        pre = min(sum(F[u] for u in range(h, v)) for h, v in zip(heads, mine))
        post = min(sum(B[u] for u in range(h, v)) for h, v in zip(heads, mine))
        work = M * sum(F[v] + B[v] + W[v] + R[v] for v in mine)
        fb = M * sum(F[v] + B[v] + R[v] + (0.0 if split else W[v]) for v in mine)
        best = max(best, pre + work + plan.optimizer_s.get(r, 0.0), pre + fb + post)
    # the engine adds the same durations in another order: allow for float rounding
    return best * (1 - 1e-12)


def mfu_bound(plan) -> float:
    lb = step_time_bound(plan)
    if lb <= 0:
        return 1.0
    flops = plan.model.model_flops_per_token * plan.tokens_per_step
    return flops / (lb * plan.num_gpus * plan.device.peak_flops)


def bound_task(base: dict[str, Any], task, caches=None) -> dict[str, Any]:
    """Phase 1 of the search, in a worker: plan, memory, MFU bound; no simulation."""
    row, plan, mem = plan_row(base, task)
    row["mfu_bound"] = None
    if plan is None or not mem.fits_in_memory:
        return row
    row["mfu_bound"] = mfu_bound(plan)
    # candidates that simulate identically (e.g. selective recomputation with FlashAttention,
    # which costs nothing, vs none) and use the same memory are one layout: keep the first
    row["equiv"] = hashlib.sha1(repr((sim_key(plan), round(mem.peak_bytes))).encode()).hexdigest()[:16]
    return row
