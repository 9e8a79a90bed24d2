"""Scenario -> Result: the whole pipeline in one call."""

from __future__ import annotations

import time
from typing import Callable

from simtrain.analysis.hotspots import hotspots as find_hotspots
from simtrain.analysis.metrics import Result, summarize_main
from simtrain.analysis.moe_report import moe_summary
from simtrain.engine.actions import Engine
from simtrain.engine.dspipe import PIPE_COPIES, PIPE_GATHER, TIED_ALLREDUCE
from simtrain.engine.gcpause import paused_gc
from simtrain.engine.placement import placement_warnings
from simtrain.engine.plan import Plan, check_supported, make_plan
from simtrain.scenario.config import Scenario
from simtrain.workload.memory import estimate


BUSIEST_LINKS = 4  # link-utilisation series kept for traces


def simulate(scenario: Scenario, progress: Callable[[float, int], None] | None = None, link_series: bool = False) -> Result:
    """`progress(simulated_seconds, events)`, when given, is called as the engine runs.
    `link_series`: also keep the utilisation over time of the busiest links (for traces;
    `result.extra["_link_series"]`, left out of the JSON)."""
    t0 = time.perf_counter()
    return simulate_plan(make_plan(scenario), t0=t0, progress=progress, link_series=link_series)


def simulate_plan(plan: Plan, setup: Callable[[Engine], None] | None = None, t0: float | None = None,
                  progress: Callable[[float, int], None] | None = None, link_series: bool = False,
                  details: bool = True) -> Result:
    """Simulate an already built plan. `setup(engine)` may prime the engine before it runs
    (the sweep hands it routes and link loads cached from an identical layout);
    `details=False` skips the memory report, critical path and busiest link (sweeps keep
    the metrics only)."""
    t0 = time.perf_counter() if t0 is None else t0
    with paused_gc():  # the engine and the analysis of its records (simtrain.engine.gcpause)
        return _simulate_plan(plan, setup, t0, progress, link_series, details)


def _simulate_plan(plan: Plan, setup: Callable[[Engine], None] | None, t0: float,
                   progress: Callable[[float, int], None] | None, link_series: bool, details: bool) -> Result:
    check_supported(plan.scenario)
    engine = Engine(plan)
    if setup is not None:
        setup(engine)
    if link_series:
        engine.net.rate_log = []
    records = engine.run(progress)
    pipe = pipe_partition_seconds(plan, records) if engine.pipe_work else None
    tied = labelled_seconds(plan, records, (TIED_ALLREDUCE,))[TIED_ALLREDUCE] if engine.tied_stages else None
    result, main = summarize_main(plan, records)
    result.events = next(engine.env._eid)  # simpy numbers every scheduled event
    result.engine_run_s = engine.run_s
    result.wall_time_s = time.perf_counter() - t0
    result.extra["plan"] = plan
    if details:
        result.extra["memory"] = estimate(plan).to_json()
        result.extra["hotspots"] = find_hotspots(plan, engine, result, main)
        result.extra["warnings"] = placement_warnings(plan)
    if link_series:
        result.extra["_link_series"] = _busiest_series(plan, engine, result.step_time_s)
    moe = moe_summary(plan)
    if moe is not None:
        result.extra["moe"] = moe
    wait = host_wait_seconds(plan)
    if wait > 0:
        result.extra["host_wait_s"] = wait
    if pipe is not None:
        result.extra["pipe_partition_s"] = pipe
    if tied is not None:
        result.extra["tied_grad_allreduce_s"] = tied
    return result


def pipe_partition_seconds(plan: Plan, records: list) -> dict[str, float]:
    """DeepSpeed's TP-partitioned boundary tensors (stack.pipe_partitioned), per step and
    mean over the GPUs as the breakdown is: the all-gathers' seconds (inside exposed TP
    comm) and the copies' (inside compute)."""
    got = labelled_seconds(plan, records, (PIPE_GATHER, PIPE_COPIES))
    return {"all_gather": got[PIPE_GATHER], "copies": got[PIPE_COPIES]}


def labelled_seconds(plan: Plan, records: list, labels: tuple[str, ...]) -> dict[str, float]:
    """Seconds per step of the main-stream records with each label, mean over the GPUs
    (each simulated device weighted by the devices its class stands for)."""
    weight = {d: plan.classes.size(d) for d in plan.simulated}
    n = sum(weight.values())
    out = dict.fromkeys(labels, 0.0)
    for r in records:
        if r.stream == "main" and r.label in out and r.device in weight:
            out[r.label] += (r.end - r.start) * weight[r.device] / n
    return out


def host_wait_seconds(plan: Plan) -> float:
    """Of the compute and recomputation in the breakdown, the seconds per step the GPU waits
    for the host with the device drained (DeepSpeed v0.3's ZeRO-3 list collectives,
    simtrain.workload.zero3), averaged over the pipeline ranks as the breakdown is."""
    per_rank: dict[int, float] = {}
    for st in plan.stages:
        r = plan.schedule.placement[st.index]
        per_rank[r] = per_rank.get(r, 0.0) + st.layers * st.layer.host_wait * plan.layout.microbatches
    return sum(per_rank.values()) / len(per_rank) if per_rank else 0.0


def _busiest_series(plan: Plan, engine: Engine, step: float) -> dict[str, list[tuple[float, float]]]:
    """Utilisation over time of one link of each of the busiest link classes (links alike
    carry the same traffic), named "u-v (kind)"."""
    net = engine.net
    busy = sorted(net.link_busy.items(), key=lambda kv: -kv[1] / net._class_capacity[kv[0]])[:BUSIEST_LINKS]
    links = [net._class_links[cid][0] for cid, _ in busy]
    series = net.link_series(links)
    return {f"{u}-{v} ({plan.topology.link((u, v)).kind})": series[(u, v)] for u, v in links}
