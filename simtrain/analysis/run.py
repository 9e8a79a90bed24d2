"""Scenario -> Result: the whole pipeline in one call."""

from __future__ import annotations

import time
from typing import Callable

from simtrain.analysis.hotspots import hotspots
from simtrain.analysis.metrics import Result, summarize
from simtrain.engine.actions import Engine
from simtrain.engine.plan import Plan, check_supported, make_plan
from simtrain.scenario.config import Scenario
from simtrain.workload.memory import estimate


def simulate(scenario: Scenario, progress: Callable[[float, int], None] | None = None) -> Result:
    """`progress(simulated_seconds, events)`, when given, is called as the engine runs."""
    t0 = time.perf_counter()
    return simulate_plan(make_plan(scenario), t0=t0, progress=progress)


def simulate_plan(plan: Plan, setup: Callable[[Engine], None] | None = None, t0: float | None = None,
                  progress: Callable[[float, int], None] | None = None) -> Result:
    """Simulate an already built plan. `setup(engine)` may prime the engine before it runs
    (the sweep hands it routes and link loads cached from an identical layout)."""
    t0 = time.perf_counter() if t0 is None else t0
    check_supported(plan.scenario)
    engine = Engine(plan)
    if setup is not None:
        setup(engine)
    records = engine.run(progress)
    result = summarize(plan, records)
    result.events = next(engine.env._eid)  # simpy numbers every scheduled event
    result.engine_run_s = engine.run_s
    result.wall_time_s = time.perf_counter() - t0
    result.extra["plan"] = plan
    result.extra["memory"] = estimate(plan).to_json()
    result.extra["hotspots"] = hotspots(plan, engine, result)
    return result
