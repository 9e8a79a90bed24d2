"""stack.sustained_fraction: a software stack's sustained share of the device's kernel throughput."""

from __future__ import annotations

import pytest

from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError


def test_sustained_fraction_override_scales_compute_and_rejects_bad_values() -> None:
    from simtrain.analysis.run import simulate
    from simtrain.engine.plan import make_plan

    base = ["engine.comm=\"free\""]
    stack_value = load_scenario(None, base).stack.sustained_fraction
    catalog = simulate(load_scenario(None, base))
    slower = simulate(load_scenario(None, base + [f"stack.sustained_fraction={stack_value * 0.9}"]))
    assert make_plan(load_scenario(None, base)).device.sustained_fraction == pytest.approx(stack_value, rel=1e-12)
    # GEMM and attention time scale as 1/fraction; memory-bound kernels do not, so the
    # step grows by at most 1/0.9 (tolerance 1e-9) and by most of it here
    ratio = slower.step_time_s / catalog.step_time_s
    assert 1 / 0.9 - 0.03 < ratio <= 1 / 0.9 + 1e-9, ratio
    for bad_value in ("0", "2.5", "-0.5"):
        with pytest.raises(SimtrainError, match=r"stack.sustained_fraction = .*must be in \(0, 2\]"):
            load_scenario(None, base + [f"stack.sustained_fraction={bad_value}"])


def test_the_old_cluster_key_says_where_it_moved() -> None:
    with pytest.raises(SimtrainError, match=r"cluster.sustained_fraction = 0.74: moved to the software stack as stack.sustained_fraction"):
        load_scenario(None, ["cluster.sustained_fraction=0.74"])
