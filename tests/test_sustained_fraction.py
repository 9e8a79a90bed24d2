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
    from simtrain.engine.plan import slowest_of

    s = load_scenario(None, base)
    plan = make_plan(s)
    assert plan.device.sustained_fraction == pytest.approx(stack_value / slowest_of(plan.num_gpus, s.cluster.gpu_speed_sigma), rel=1e-12)
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


def test_slowest_of_n_devices_follows_normal_order_statistics() -> None:
    from simtrain.engine.plan import slowest_of

    # exact expected maxima of n standard normals: n=2: 1/sqrt(pi); n=10: 1.5388; n=100: 2.5076
    for n, exact in ((2, 0.5642), (10, 1.5388), (100, 2.5076)):
        assert (slowest_of(n, 0.01) - 1) / 0.01 == pytest.approx(exact, rel=0.05)
    assert slowest_of(1, 0.05) == 1.0 and slowest_of(1000, 0.0) == 1.0


def test_weak_scaling_pays_the_slowest_device() -> None:
    # the same per-GPU work on 8 and on 512 GPUs (pure DP, communication free): the larger
    # job waits for a slower slowest device, exactly the ratio of the order statistics
    from simtrain.analysis.run import simulate
    from simtrain.engine.plan import slowest_of

    def step(n: int) -> float:
        return simulate(load_scenario(None, ['model.name="llama3-8b"', f"cluster.gpus={n}", "parallel.tp=1", "parallel.pp=1",
                                             f"parallel.dp={n}", "parallel.vp=1", "parallel.first_stage_layers=-1",
                                             "parallel.last_stage_layers=-1", f"training.global_batch={n}",
                                             "training.seq_len=2048", 'schedule.name="1f1b"', 'engine.comm="free"',
                                             "stack.launch_us=0", "parallel.zero=0"])).step_time_s
    ratio = step(512) / step(8)
    expected = slowest_of(512, 0.011) / slowest_of(8, 0.011)
    assert ratio == pytest.approx(expected, rel=0.002)  # kernel fixed costs do not scale


def test_gpu_speed_sigma_is_checked() -> None:
    from simtrain.engine.plan import make_plan

    with pytest.raises(SimtrainError, match=r"cluster.gpu_speed_sigma = 0.7: must be in \[0, 0.5\)"):
        make_plan(load_scenario(None, ["cluster.gpu_speed_sigma=0.7"]))
