"""Scenario -> Result: the whole pipeline in one call."""

from __future__ import annotations

import time

from simtrain.config import Scenario
from simtrain.engine import Engine
from simtrain.memory import estimate
from simtrain.metrics import Result, summarize
from simtrain.plan import check_supported, make_plan


def simulate(scenario: Scenario) -> Result:
    t0 = time.perf_counter()
    plan = make_plan(scenario)
    check_supported(scenario)
    engine = Engine(plan)
    records = engine.run()
    result = summarize(plan, records)
    result.events = next(engine.env._eid)  # simpy numbers every scheduled event
    result.wall_time_s = time.perf_counter() - t0
    result.extra["plan"] = plan
    result.extra["memory"] = estimate(plan).to_json()
    return result
