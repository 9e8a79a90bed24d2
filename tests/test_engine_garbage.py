"""An engine run leaves no reference cycle through the engine: reference counting frees
it (its records, programs, queues) as soon as the caller drops it, not the cyclic
collector some time later (a sweep runs hundreds of engines in a row; when each engine
waited for the collector, a fifth of a sweep's time went to collections)."""

import gc
import weakref

from simtrain.analysis.run import simulate_plan
from simtrain.engine.plan import make_plan
from simtrain.explore.sweep.base import point_scenario, prepare_base
from tests.sweep_cases import WIDE, scenario_file


def test_engine_is_freed_without_the_cycle_collector(tmp_path):
    base = prepare_base(scenario_file(tmp_path, WIDE, "s"), [], ["parallel.tp"])
    # data parallelism with the distributed optimizer: gradient reduce-scatters and
    # parameter all-gathers queue on the DP stream (simtrain.engine.dpstream)
    for values in ({"parallel.tp": 2, "parallel.pp": 1, "parallel.zero": 1},
                   {"parallel.tp": 1, "parallel.pp": 2, "parallel.zero": 0}):
        plan = make_plan(point_scenario(base, values))
        assert plan.layout.dp > 1
        refs = []
        gc.collect()
        gc.disable()
        try:
            result = simulate_plan(plan, lambda e: refs.append(weakref.ref(e)))
            assert result.step_time_s > 0 and refs[0]() is None
        finally:
            gc.enable()
