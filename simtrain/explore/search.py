"""`simtrain search`: the best valid layout for a model, cluster and global batch.

Search space (each dimension overridable on the command line):
    tp        divisors of the attention heads (and compatible with the key/value heads)
              up to the GPUs of one node (TP stays on NVLink unless --tp says otherwise)
    cp        1, 2, 4, 8 where 2*cp divides the sequence length
    pp        divisors of the GPU count up to the layer count: layers that do not divide
              over pp*vp are split as evenly as possible, the end stages taking the
              shortfall (simtrain.scenario.layout.split_layers), so PP16 is tried for a
              126-layer model
    vp        1..8 with pp*vp at most the layers + 2 (vp > 1 only with pp > 1)
    micro-batch 1, 2, 4, 8;  recompute none, selective, full
    sequence parallelism off and on (when tp > 1)
    schedules 1f1b (vp = 1) and interleaved (vp > 1): Megatron-LM's; --schedules adds
              zb-h1, llama3, bfs, gpipe, interleaved-zb, zb-v, dualpipe, dualpipe-v
DP follows from the GPU count; the global batch stays the scenario's. ZeRO stage,
FlashAttention and everything else stay the scenario's.

Pruning, in order (no rule knows which layouts are "good"; each only skips work):
 1. invalid: the layout, plan or schedule is rejected by simtrain itself (the one-line
    reason is kept), e.g. global batch not divisible by DP x micro-batch;
 2. does not fit: simtrain.workload.memory's per-rank peak estimate on the plan, without
    simulating, exceeds the device memory;
 3. duplicate: the candidate's plan has the same costs and memory as an earlier one, so
    its simulation would be identical (selective recomputation with FlashAttention costs
    nothing: FlashAttention already recomputes the attention core);
 4. cannot win: an upper bound on MFU from compute alone, with no communication and
    no pipeline stall beyond the unavoidable fill and drain, is below the K-th best MFU
    simulated so far (K = --top). The bound is the step-time lower bound
        max over pipeline ranks r of  max( pre_r + work_r + opt_r ,
                                           pre_r + M*fb_r + post_r )
    with work_r all of r's compute for M micro-batches (forward, backward, weight
    gradients, recomputation), fb_r the same without split-off weight gradients,
    pre_r the forwards of the virtual stages before r's first one (one micro-batch must
    flow through them before r can start) and post_r their backwards (after r's last
    backward). Every simulated step is at least this long, so no pruned layout could
    have entered the top K. Candidates are simulated best bound first, in rounds, so the
    threshold rises quickly.
Ties in MFU go to the candidate listed first: smaller TP, CP, PP, VP, micro-batch,
recompute none before selective before full, sequence parallelism off before on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simtrain.scenario.errors import SimtrainError

RECOMPUTE = ("none", "selective", "full")
DEFAULT_SCHEDULES = ("1f1b", "interleaved")
VP_SCHEDULES = {"interleaved", "llama3", "bfs"}  # take vp > 1


@dataclass(frozen=True)
class Space:
    tp: tuple[int, ...]
    cp: tuple[int, ...]
    pp: tuple[int, ...]
    vp: tuple[int, ...]
    micro_batch: tuple[int, ...]
    recompute: tuple[str, ...]
    sequence_parallel: tuple[bool, ...]
    schedules: tuple[str, ...]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def default_space(s, world: int, gpus_per_node: int) -> Space:
    m = s.model
    kv = m.num_key_value_heads or m.num_attention_heads
    tp = tuple(d for d in _divisors(m.num_attention_heads)
               if d <= max(1, gpus_per_node) and world % d == 0 and (kv % d == 0 or d % kv == 0))
    cp = tuple(c for c in (1, 2, 4, 8) if s.training.seq_len % (2 * c) == 0 or c == 1)
    pp = tuple(d for d in _divisors(world) if d <= m.num_hidden_layers)
    return Space(tp, cp, pp, tuple(range(1, 9)), (1, 2, 4, 8), RECOMPUTE, (False, True), DEFAULT_SCHEDULES)


def _schedules_for(vp: int, schedules: tuple[str, ...]) -> list[str]:
    """Schedules to try at this vp: vp > 1 needs an interleaving schedule; at vp = 1 the
    interleaving ones equal 1f1b/gpipe, so they are tried only when no plain one is listed."""
    from simtrain import schedule as sched

    inter = [n for n in schedules if sched.REGISTRY[n].interleaved]
    plain = [n for n in schedules if not sched.REGISTRY[n].interleaved]
    if vp > 1:
        return inter
    return plain or inter


def candidates(space: Space, layers: int, world: int, pinned_ends: bool = False) -> list[dict[str, Any]]:
    """Every combination that can be a layout at all (cheap arithmetic only; simtrain's own
    checks reject the rest with their reasons)."""
    out = []
    for tp in space.tp:
        for cp in space.cp:
            for pp in space.pp:
                if world % (tp * cp * pp):
                    continue
                for vp in space.vp:
                    if vp > 1 and pp == 1:
                        continue
                    if pp * vp > layers + 2:  # a middle stage would be empty (split_layers refuses it)
                        continue
                    for mb in space.micro_batch:
                        for rc in space.recompute:
                            for sp in space.sequence_parallel:
                                if sp and tp == 1:
                                    continue
                                for name in _schedules_for(vp, space.schedules):
                                    out.append({"parallel.tp": tp, "parallel.cp": cp, "parallel.pp": pp,
                                                "parallel.vp": vp, "parallel.micro_batch": mb,
                                                "parallel.recompute": rc, "parallel.sequence_parallel": sp,
                                                "schedule.name": name})
    return out


@dataclass
class SearchResult:
    rows: list[dict[str, Any]]  # every candidate, with status
    ranked: list[dict[str, Any]]  # simulated rows, best MFU first
    counts: dict[str, int]


def search(base: dict[str, Any], space: Space, top: int = 5, jobs: int = 0, executor: str = "local",
           address: str = "", progress: bool = False, layers: int = 0, world: int = 0,
           pinned_ends: bool = False) -> SearchResult:
    from simtrain.explore.sweep.evaluate import Task
    from simtrain.explore.sweep.executors import check_jobs, local_session, ray_session, run_tasks
    from simtrain.explore.sweep.progress import Progress
    from simtrain.scenario.files import memoized

    check_jobs(jobs)
    with memoized():  # the scenario's files, found and read once (they do not change meanwhile)
        return _search(base, space, top, jobs, executor, address, progress, layers, world, pinned_ends)


def _search(base: dict[str, Any], space: Space, top: int, jobs: int, executor: str, address: str, progress: bool,
            layers: int, world: int, pinned_ends: bool) -> SearchResult:
    from simtrain.explore.sweep.evaluate import Task
    from simtrain.explore.sweep.executors import local_session, ray_session, run_tasks
    from simtrain.explore.sweep.progress import Progress

    points = candidates(space, layers, world, pinned_ends)
    if not points:
        dims = ", ".join(f"{name} {','.join(map(str, getattr(space, name)))}" for name in ("tp", "cp", "pp", "vp"))
        raise SimtrainError(f"search: the search space is empty ({dims} over {world} GPUs, {layers} layers: no "
                            "combination divides them); widen --tp/--pp/--cp/--vp/--micro-batch or check the GPU count")
    tasks = [Task(i, v) for i, v in enumerate(points)]
    k = max(1, top)
    with ray_session(executor, address, jobs), local_session(base, jobs, executor):
        bar = Progress(len(tasks), "search: bounds", enabled=progress)
        rows = run_tasks(base, tasks, jobs, executor, address, kind="bound", progress=bar)
        bar.close()
        for r in rows:
            r.setdefault("mfu_bound", None)
            r["status"] = "invalid" if not r["valid"] else ("does not fit" if not r["fits_in_memory"] else "")
        first: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["mfu_bound"] is None:
                continue
            twin = first.setdefault(r["equiv"], r)
            if twin is not r:
                r["status"] = "duplicate"
                r["reason"] = (f"simulates exactly as candidate {twin['index']} (recompute {twin['recompute']}, "
                               f"schedule {twin['schedule']}): same costs and memory")
        live = sorted((r for r in rows if r["mfu_bound"] is not None and r["status"] != "duplicate"),
                      key=lambda r: (-r["mfu_bound"], r["index"]))
        bar = Progress(len(live), "search: simulate", enabled=progress)
        simulated = _simulate_in_bound_order(base, points, live, k, jobs, executor, bar)
        bar.close()
    ranked = sorted(simulated, key=lambda r: (-r["mfu"], r["index"]))
    counts = {"candidates": len(rows)}
    for st in ("invalid", "does not fit", "duplicate", "cannot win", "simulated"):
        counts[st] = sum(1 for r in rows if r["status"] == st)
    return SearchResult(rows, ranked, counts)


def _simulate_in_bound_order(base, points, live: list[dict[str, Any]], k: int, jobs: int, executor: str,
                              bar) -> list[dict[str, Any]]:
    """Rule 4 in bound order. Candidate j is examined (exact memory, then simulated if it
    fits) iff its bound reaches the k-th best MFU simulated among the candidates before it;
    every later one then cannot win. The workers run ahead speculatively (a candidate whose
    bound already falls below the running threshold is not started), and results are taken
    in order, so the statuses do not depend on the number of workers or their timing."""
    from simtrain.explore.sweep.evaluate import Task
    from simtrain.explore.sweep.executors import Stream

    simulated: list[dict[str, Any]] = []
    best: list[float] = []
    results: dict[int, dict[str, Any]] = {}
    nxt = 0  # next candidate to submit
    with Stream(base, jobs, executor, "search") as st:
        for pos, r in enumerate(live):
            threshold = best[k - 1] if len(best) >= k else -1.0
            if r["mfu_bound"] < threshold:
                for q in live[pos:]:
                    q["status"] = "cannot win"
                    q["reason"] = (f"MFU bound {100 * q['mfu_bound']:.1f}% below the {_ordinal(k)} best "
                                   f"simulated {100 * threshold:.1f}%")
                bar.update(len(live) - pos)
                break
            nxt = max(nxt, pos)
            while nxt < len(live) and st.pending < st.slots and live[nxt]["mfu_bound"] >= threshold:
                st.submit(Task(live[nxt]["index"], points[live[nxt]["index"]]), threshold=threshold)
                nxt += 1
            while r["index"] not in results:
                o = st.next()
                results[o["index"]] = o
            o = results.pop(r["index"])
            bound = r["mfu_bound"]
            r.update(o)
            r["mfu_bound"] = bound
            r["status"] = ("does not fit" if o["valid"] and o["fits_in_memory"] is False else
                           "cannot win" if o.get("mfu_bound_schedule") is not None and o["mfu_bound_schedule"] < threshold else
                           "simulated" if o["simulated"] else "invalid")
            if r["status"] == "cannot win":
                r["reason"] = (f"MFU bound on its schedule {100 * o['mfu_bound_schedule']:.1f}% below the {_ordinal(k)} "
                               f"best simulated {100 * threshold:.1f}%")
            if r["status"] == "simulated":
                simulated.append(r)
                best = sorted(best + [o["mfu"]], reverse=True)
            bar.update()
    return simulated  # (speculative runs past the stop end with the worker pool)


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def set_args(row: dict[str, Any]) -> str:
    """The winner as --set options to paste into `simtrain run`."""
    keys = [("parallel.tp", "tp"), ("parallel.cp", "cp"), ("parallel.pp", "pp"), ("parallel.vp", "vp"),
            ("parallel.micro_batch", "micro_batch"), ("parallel.recompute", "recompute"),
            ("parallel.sequence_parallel", "sequence_parallel"), ("schedule.name", "schedule")]
    parts = []
    for key, col in keys:
        v = row[col]
        parts.append(f"--set {key}={str(v).lower() if isinstance(v, bool) else v}")
    return " ".join(parts) + " --set parallel.dp=0"
