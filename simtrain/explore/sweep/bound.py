"""Phase 1 of `simtrain search`, run by the executors like any sweep point: validity, a
lower bound on memory and an upper bound on MFU from compute alone (rules 1, 2 and 4 in
simtrain.explore.search), without generating the candidate's schedule or simulating.
The search asks the executors for kind "bound"; they import this module, never the search.

Both bounds come from the plan built with a one-micro-batch schedule in place of the
candidate's (its layout, stage split, per-stage costs and placement are the real ones):
- memory: with one micro-batch, a rank holds that micro-batch's activations of all its
  virtual stages at once; in any valid schedule it holds at least those (when the first
  micro-batch's forward reaches the rank's last stage, none of that micro-batch's
  backwards on the rank can have run: they wait for the model's last stage), on top of
  the same model states and buffers. So this estimate is at most the real one, and a
  candidate that does not fit even so cannot fit;
- step time: `step_time_bound` needs only the micro-batch count, the placement and the
  stage costs.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from simtrain.explore.sweep.evaluate import _first_line, _layout_fields, empty_row, plan_row, sim_key, simulate_row
from simtrain.scenario.config import tier_overrides
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.layout import Coord


def stage_compute(st) -> tuple[float, float, float, float]:
    """(forward, input-gradient backward, weight-gradient, recomputation) seconds of one
    micro-batch through virtual stage `st`; an MoE model's stage has its first
    `dense_layers` dense (simtrain.engine.plan)."""
    ends = [e for e in (st.embed, st.head) if e]
    parts = [(st.layer, st.layers - st.dense_layers)] + ([(st.dense, st.dense_layers)] if st.dense_layers else [])
    return (sum(n * (lc.fwd[0] + lc.fwd[1]) for lc, n in parts) + sum(e.fwd for e in ends),
            sum(n * (lc.bwd_input[0] + lc.bwd_input[1]) for lc, n in parts) + sum(e.bwd_input for e in ends),
            sum(n * lc.bwd_weight for lc, n in parts) + sum(e.bwd_weight for e in ends),
            sum(n * lc.recompute for lc, n in parts))


def step_time_bound(plan, split: bool | None = None, comm: bool = False, mixed: bool | None = None) -> float:
    """Lower bound on the step time (rule 4 in simtrain.explore.search): compute, and with
    `comm` the tensor- and context-parallel collectives the engine cannot hide (at their
    time alone on an idle network, the fastest algorithm's). `split`: whether the
    candidate's schedule splits off weight gradients (default: the plan's schedule's);
    `mixed`: whether it splits only some (DualPipe: the others' weight gradients still
    hide collectives)."""
    L = plan.layout
    sched = plan.schedule
    M = L.microbatches // max(1, sched.chains)  # through each stage (the plan's schedule may be a stand-in)
    split = sched.split_backward if split is None else split
    mixed = sched.mixed if mixed is None else mixed
    S = len(plan.stages)
    F, B, W, R = [0.0] * S, [0.0] * S, [0.0] * S, [0.0] * S
    seen: dict = {}
    for st in plan.stages:
        F[st.index], B[st.index], W[st.index], R[st.index] = stage_compute(st)
        if comm:
            key = (st.layers, st.dense_layers, sched.placement[st.index])  # (per-layer costs: the same on every stage)
            hit = seen.get(key)
            if hit is None:
                hit = seen[key] = exposed_comm(plan, st, split and not mixed)
            F[st.index] += hit[0]
            B[st.index] += hit[1]
            R[st.index] += hit[2]
    by_rank: dict[int, list[int]] = {}
    for v in range(S):
        by_rank.setdefault(sched.placement[v], []).append(v)
    preF, preB = [0.0], [0.0]  # prefix sums over the stages before v
    for v in range(S):
        preF.append(preF[-1] + F[v])
        preB.append(preB[-1] + B[v])
    best = 0.0
    for r, mine in by_rank.items():
        # forwards that must run before this rank's first stage can start, backwards that
        # must run after its last backward: the stages before it on its route (the
        # smallest over the rank's stages, since a rank may start on either chain)
        heads = [v - v % sched.chain_length for v in mine]
        pre = min(preF[v] - preF[h] for h, v in zip(heads, mine))
        post = min(preB[v] - preB[h] for h, v in zip(heads, mine))
        work = M * sum(F[v] + B[v] + W[v] + R[v] for v in mine)
        fb = M * sum(F[v] + B[v] + R[v] + (0.0 if split else W[v]) for v in mine)
        best = max(best, pre + work + plan.optimizer_s.get(r, 0.0), pre + fb + post)
    # the engine adds the same durations in another order: allow for float rounding
    return best * (1 - 1e-12)


def exposed_comm(plan, st, split: bool) -> tuple[float, float, float]:
    """Seconds of TP and CP collectives a virtual stage's forward, backward and full
    recomputation leave exposed on the main stream for one micro-batch, as the engine
    runs them (simtrain.engine.actions): forward all-reduces in full; in the backward the
    excess over the weight-gradient GEMMs they overlap (sequence parallelism: the
    all-gather in full), context-parallel K/V exchanges in full or, as a ring, their excess
    over the attention kernel. Each collective at its idle-network time alone, by the
    fastest candidate algorithm: never more than the engine's time for it."""
    s, L, lc = plan.scenario, plan.layout, st.layer
    eng = s.engine
    if eng.comm == "free" or st.layers == 0:
        return 0.0, 0.0, 0.0
    rep = L.rank(Coord(0, plan.schedule.placement[st.index], 0, 0))
    f = b = 0.0
    if lc.tp_bytes > 0 and not eng.overlap_tp_comm and L.tp > 1:
        ar = _alone(plan, "tp", rep, "all-reduce", lc.tp_bytes)
        # what each block's input-gradient collective can run beside (LayerCost.wgrad_parts)
        beside = (0.0, 0.0) if split or not eng.async_tp_backward else tuple(p[1] for p in lc.wgrad_parts())
        sp = s.parallel.sequence_parallel
        ag = _alone(plan, "tp", rep, "all-gather", lc.tp_bytes) if sp else 0.0
        rs = _alone(plan, "tp", rep, "reduce-scatter", lc.tp_bytes) if sp else 0.0

        def block(w: float) -> float:  # a dense block's backward collectives beside w of W
            return ag + max(0.0, rs - w) if sp else max(0.0, ar - w)

        if st.moe is None:  # two blocks per layer, one pair (an all-reduce's bytes) each way
            f += 2 * ar
            b += block(beside[0]) + block(beside[1])
        else:
            # the attention block as a dense one; the MLP block as a dense one in the dense
            # layers, and an MoE block's pair (exposed) only with shared experts or expert TP
            # (MoECost.tp_block): averaged over the stage's layers
            dense, n = st.dense_layers, st.layers
            moe_pair = 1.0 if st.moe.tp_block else 0.0
            mlp_w = 0.0 if split or not eng.async_tp_backward or not dense else st.dense.wgrad_parts()[1][1]
            f += ar * (1 + (dense + (n - dense) * moe_pair) / n)
            b += block(beside[0]) + (dense * block(mlp_w) + (n - dense) * moe_pair * ar) / n
    if lc.cp_bytes > 0 and L.cp > 1:
        ag, rs = _alone(plan, "cp", rep, "all-gather", lc.cp_bytes), _alone(plan, "cp", rep, "reduce-scatter", lc.cp_bytes)
        if s.parallel.cp_algo == "ring":
            f += max(0.0, ag - lc.attn_fwd)
            b += max(0.0, rs - lc.attn_bwd)
        else:
            f += ag
            b += rs
    r = f if s.parallel.recompute == "full" else 0.0
    return st.layers * f, st.layers * b, st.layers * r


_COMMS: dict = {}
_TIMES: dict = {}


def _alone(plan, dim: str, rep: int, op: str, size: float) -> float:
    """Idle-network time of `rep`'s `dim` collective alone, the fastest algorithm's
    (memoized per worker: candidates share groups)."""
    L, sc = plan.layout, plan.scenario
    tkey = _network_key(plan)
    key = (tkey, dim, L.tp, L.cp, L.pp, L.order, rep, op, size)
    hit = _TIMES.get(key)
    if hit is None:
        hit = _TIMES[key] = _alone_time(plan, tkey, L.group(dim, rep), op, size)
        if len(_TIMES) > 100_000:
            _TIMES.clear()
    return hit


_LAST_KEY: list = [None, None]  # (scenario, its network key): one plan's collectives are asked in a row


def _network_key(plan) -> tuple:
    """What a collective's idle-network time depends on besides its group, op and size."""
    sc = plan.scenario
    if _LAST_KEY[0] is sc:
        return _LAST_KEY[1]
    w = sc.whatif
    tkey = (sc.cluster.topology, sc.cluster.device, tuple(tier_overrides(sc.cluster).items()), plan.topology.num_gpus,
            sc.engine.collective_algo, sc.stack.collective_us, w.degraded_links, w.link_bandwidth_factor, w.failed_links)
    _LAST_KEY[:] = [sc, tkey]
    return tkey


def _alone_time(plan, tkey, group: tuple[int, ...], op: str, size: float) -> float:
    from simtrain.engine.tpalone import alone_seconds, idle_comm

    if len(group) < 2:
        return 0.0
    comm = _COMMS.get(tkey)
    if comm is None:
        if len(_COMMS) > 8:
            _COMMS.clear()
        comm = _COMMS[tkey] = idle_comm(plan.topology, plan.scenario.engine.collective_algo,
                                        plan.scenario.stack.collective_us * 1e-6)
    return alone_seconds(comm, op, group, size)


def mfu_bound(plan, split: bool | None = None, comm: bool = False, mixed: bool | None = None) -> float:
    lb = step_time_bound(plan, split, comm, mixed)
    if lb <= 0:
        return 1.0
    flops = plan.model.model_flops_per_token * plan.tokens_per_step
    return flops / (lb * plan.num_gpus * plan.device.peak_flops)


@lru_cache(maxsize=1024)
def _splits(name: str, pp: int, vp: int, n: int) -> tuple[bool, bool]:
    """Whether schedule `name` splits off weight gradients, and whether only some
    (generated once, small)."""
    from simtrain import schedule as sched

    m = max(pp, n)
    kind = sched.REGISTRY[name]
    acts = kind.generate(pp, m, vp=vp, **({"n": n} if n else {}))
    flat = (a for lst in acts.values() for step in lst for a in (step if isinstance(step, tuple) else (step,)))
    return any(a.kind == "W" for a in flat), kind.mixed


def _looped(name: str) -> bool:
    """Schedule `name` places virtual stage v on rank v % pp, one chain (bfs's placement)."""
    from simtrain import schedule as sched

    kind = sched.REGISTRY.get(name)
    return kind is not None and kind.placement is None and kind.chains == 1


@lru_cache(maxsize=256)
def _one_microbatch(pp: int, vp: int):
    from simtrain import schedule as sched

    return sched.build("bfs", pp, vp, 1)


def bound_task(base: dict[str, Any], task, caches=None) -> dict[str, Any]:
    """Phase 1 of the search, in a worker: validity, memory lower bound, MFU bound."""
    from simtrain.engine.plan import check_supported, make_plan
    from simtrain.explore.sweep.base import point_scenario
    from simtrain.scenario.layout import make_layout
    from simtrain.workload.memory import estimate, layer_activation_bytes

    row = empty_row(task)
    row["mfu_bound"] = None
    try:
        s = point_scenario(base, task.values)
        row.update(_layout_fields(s))
        L = make_layout(s)
        if _looped(s.schedule.name) and not s.schedule.file:
            plan = make_plan(s, schedule=_one_microbatch(L.pp, L.vp))
        else:  # V-shaped or two-chain schedules place the stages otherwise: their own schedule
            plan = make_plan(s)
        check_supported(s)
    except SimtrainError as e:
        row["reason"] = _first_line(e)
        return row
    row.update(_layout_fields(s, plan))
    row["schedule"] = s.schedule.name
    row["valid"] = True
    mem = estimate(plan)
    row["memory_bound_gib"] = mem.peak_memory_gib
    if not mem.fits_in_memory:
        row["fits_in_memory"] = False
        row["reason"] = (f"does not fit: at least {mem.peak_memory_gib:.1f} GiB of {mem.capacity_gib:.0f} GiB on "
                         f"pipeline rank {mem.peak_stage} with one micro-batch in flight")
        return row
    split, mixed = _splits(s.schedule.name, L.pp, L.vp, s.schedule.n)
    row["mfu_bound"] = mfu_bound(plan, split, comm=True, mixed=mixed)
    # candidates that simulate identically (e.g. selective recomputation with FlashAttention,
    # which costs nothing, vs none) and use the same memory are one layout: keep the first
    p = s.parallel
    act = layer_activation_bytes(s.model, s.training.seq_len, L.micro_batch, L.tp, p.sequence_parallel, p.recompute,
                                 p.flash_attention, L.cp)
    row["equiv"] = hashlib.sha1(repr((sim_key(plan), act)).encode()).hexdigest()[:16]
    return row


def schedule_bound(plan) -> float:
    """A lower bound on the step time from the candidate's own schedule: its actions run
    in order on each rank, each for its compute and the collectives the engine cannot
    hide (`exposed_comm`), every cross-rank dependency delayed by one point-to-point
    transfer alone on an idle network, then each rank's optimizer step
    (simtrain.schedule.evaluate). The engine runs the same dependencies with durations at
    least these, so its step is at least this (max-plus systems are monotone)."""
    from simtrain.schedule import evaluate

    sched = plan.schedule
    split = sched.split_backward
    cost: dict[tuple[int, str], float] = {}
    for st in plan.stages:
        F, B, W, R = stage_compute(st)
        f, b, r = exposed_comm(plan, st, split)
        cost[(st.index, "F")] = F + f
        cost[(st.index, "W")] = W
        # a backward with a W of its own to come; one that completes the weight gradient
        # (every backward unless the schedule splits them; DualPipe splits some)
        cost[(st.index, "B")] = B + b + R + r
        if split and sched.mixed:
            f, b, r = exposed_comm(plan, st, False)
        cost[(st.index, "BW")] = B + b + R + r + W

    def action_cost(a) -> float:
        if a.kind == "B" and not (split and sched.has_w(a.stage, a.microbatch)):
            return cost[(a.stage, "BW")]
        return cost[(a.stage, a.kind)]

    ev = evaluate(sched, action_cost, _p2p_alone(plan))
    return max((ev.end[acts[-1]] + plan.optimizer_s.get(r, 0.0) for r, acts in sched.actions.items() if acts), default=0.0)


def _p2p_alone(plan) -> float:
    """Idle-network time of one activation transfer between pipeline neighbours alone
    (the fastest of every pair of neighbours' on rank 0's replica)."""
    L = plan.layout
    if L.pp == 1 or plan.scenario.engine.comm == "free":
        return 0.0
    import simpy

    from simtrain.network.comm import Comm
    from simtrain.network.flows import FlowNetwork

    topo = plan.topology
    comm = Comm(FlowNetwork(simpy.Environment(), topo), topo, "auto", plan.scenario.stack.collective_us * 1e-6)
    best = float("inf")
    for p in range(L.pp):
        for q in ((p + 1) % L.pp, (p - 1) % L.pp):
            src, dst = L.rank(Coord(0, p, 0, 0)), L.rank(Coord(0, q, 0, 0))
            if src != dst:
                (ph,) = comm.p2p(src, dst, plan.p2p_bytes)
                best = min(best, comm.net.uncontended_time(ph.key, ph.nbytes, ph.latency))
    return 0.0 if best == float("inf") else best


def search_task(base: dict[str, Any], task, caches=None, threshold: float = -1.0) -> dict[str, Any]:
    """Phase 2 of the search, in a worker: the candidate's plan with its schedule, its
    memory, its schedule bound (`schedule_bound`, as MFU) and, if it fits and that bound
    reaches `threshold` (the k-th best MFU known when it was sent), its simulation."""
    row, plan, mem = plan_row(base, task)
    if plan is None or not mem.fits_in_memory:
        return row
    flops = plan.model.model_flops_per_token * plan.tokens_per_step
    try:
        lb = schedule_bound(plan)
    except SimtrainError as e:  # a schedule that deadlocks
        row.update(valid=False, reason=_first_line(e))
        return row
    row["mfu_bound_schedule"] = flops / (lb * plan.num_gpus * plan.device.peak_flops) if lb > 0 else 1.0
    if row["mfu_bound_schedule"] < threshold:
        return row
    return simulate_row(row, plan, caches)
