"""cluster.sustained_fraction: a software stack's sustained share of the device's kernel throughput."""

from __future__ import annotations

import pytest

from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError


def test_sustained_fraction_override_scales_compute_and_rejects_bad_values() -> None:
    from simtrain.analysis.run import simulate
    from simtrain.engine.plan import make_plan

    base = ["engine.comm=\"free\""]
    catalog = simulate(load_scenario(None, base))
    faster = simulate(load_scenario(None, base + ["cluster.sustained_fraction=0.74"]))
    assert make_plan(load_scenario(None, base)).device.sustained_fraction == 0.68  # the catalog is untouched
    # GEMM and attention time scale as 1/fraction; memory-bound kernels do not, so the
    # step shrinks by at most 0.68/0.74 (tolerance 1e-9) and by most of it here
    ratio = faster.step_time_s / catalog.step_time_s
    assert 0.68 / 0.74 - 1e-9 <= ratio < 0.68 / 0.74 + 0.02, ratio
    for bad_value in ("0", "1.2", "-0.5"):
        if bad_value == "0":  # 0 means "the catalog's value"
            assert simulate(load_scenario(None, base + ["cluster.sustained_fraction=0"])).step_time_s == catalog.step_time_s
            continue
        with pytest.raises(SimtrainError, match=r"cluster.sustained_fraction = .*must be in \(0, 1\]"):
            make_plan(load_scenario(None, base + [f"cluster.sustained_fraction={bad_value}"]))
