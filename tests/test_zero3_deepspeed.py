"""DeepSpeed v0.3.x ZeRO-3 as stack data (stacks/deepspeed-zero3-2021.toml,
simtrain.workload.zero3): per-tensor gathers and reduce-scatters through Python lists of
world-size views, whose per-rank host work the GPU waits for. Checked against hand counts
of the code's calls for GPT-3 175B (Megatron-LM SC21 Table 2's ZeRO-3 baseline)."""

from __future__ import annotations

import pytest

from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.workload import zero3 as Z3
from simtrain.workload.costs import layer_cost

SCENARIO = "megatron-sc21-t2-175b-zero3-1536"
OFF = ["stack.zero3_gather_rank_ops=0", "stack.zero3_reduce_rank_ops=0"]
# the host time folded into the layers' passes, as without synchronized fetches (the shipped
# stack's engine path is checked in test_zero3_sync.py)
LEGACY = ["stack.zero3_fetch_sync=false", "stack.zero3_persist_rank_ops=0"]


def _plan(extra: list[str] | None = None):
    return make_plan(load_scenario(SCENARIO, extra or []))


def test_gpt3_175b_calls_by_hand():
    """GPT-3 175B (h = 12,288, FFN 49,152), one layer on one rank, full recomputation:
    gathered (>= 100,000 elements): QKV 12,288 x 36,864 and out proj 12,288^2 (segment 0),
    fc1 and fc2 12,288 x 49,152 (segment 1); the biases (36,864, 12,288, 49,152, 12,288)
    stay whole. Forward: 2 + 2 gathers. Backward: one reduce-scatter per gathered tensor,
    plus a new gather where the elements the trace touches in between, 2 x those of the
    later tensors, reach 1e9: QKV (2 x 1.36e9), out proj (2 x 1.21e9), fc1 (2 x 6.04e8 =
    1.21e9) yes; fc2 (0) is kept. Segment 0: 2 + 2 = 4; segment 1: 2 + 1 = 3."""
    plan = _plan()
    s = plan.scenario
    assert Z3.calls_per_segment(s.model, s.parallel, s.stack) == {   # (gathers, reduce-scatters)
        ("fwd", 0): (2, 0), ("fwd", 1): (2, 0), ("bwd", 0): (2, 2), ("bwd", 1): (1, 2)}
    # without recomputation nothing is kept: every tensor is gathered again for its backward
    par = load_scenario(SCENARIO, ['parallel.recompute="none"']).parallel
    assert Z3.calls_per_segment(s.model, par, s.stack) == {
        ("fwd", 0): (2, 0), ("fwd", 1): (2, 0), ("bwd", 0): (2, 2), ("bwd", 1): (2, 2)}


def test_host_time_per_call_and_layer_cost_by_hand():
    """Per gather: 1,536 ranks x 2 operations (the narrow in DeepSpeed's loop, the backend's
    copy back) x 7 us = 21.504 ms; per reduce-scatter 3 (view, narrow, the backend's copy
    in) = 32.256 ms. The layer's forward gains 4 gathers, its recomputation (the forward
    again) 4, its backward 3 gathers and 4 reduce-scatters, exactly, against the same
    stack without them."""
    plan = _plan(LEGACY)
    s = plan.scenario
    g, r = 1536 * 2 * 7e-6, 1536 * 3 * 7e-6
    assert Z3.host_seconds(s.parallel, s.stack, 1, 0) == pytest.approx(g, rel=1e-12)
    assert Z3.host_seconds(s.parallel, s.stack, 0, 1) == pytest.approx(r, rel=1e-12)
    args = (s.model, s.parallel, plan.device, s.training.seq_len)
    with_ds = layer_cost(*args, stack=s.stack)
    base = layer_cost(*args, stack=_plan(OFF + LEGACY).scenario.stack)
    assert sum(with_ds.fwd) - sum(base.fwd) == pytest.approx(4 * g, rel=1e-9)
    assert sum(with_ds.bwd_input) - sum(base.bwd_input) == pytest.approx(3 * g + 4 * r, rel=1e-9)
    assert with_ds.recompute - base.recompute == pytest.approx(4 * g, rel=1e-9)
    assert with_ds.model_flops == base.model_flops  # host time is not work


def test_step_grows_by_the_host_time_the_gpu_waits_for():
    """96 layers x (11 gathers x 21.504 ms + 4 reduce-scatters x 32.256 ms) = 35.09 s per
    step (one micro-batch). The
    simulated step grows by that, less the data-parallel traffic the longer passes now hide
    (at most the exposed DP time of the run without them)."""
    from simtrain.analysis.run import simulate_plan
    plain = simulate_plan(_plan(OFF + LEGACY))
    ds = simulate_plan(_plan(LEGACY))
    hand = 96 * (11 * 1536 * 2 + 4 * 1536 * 3) * 7e-6
    grow = ds.step_time_s - plain.step_time_s
    assert hand - plain.breakdown["dp"] - 1e-6 <= grow <= hand + 1e-6


def test_ops_table_shows_the_host_rows():
    from simtrain.analysis.ops_table import ops_json
    rows = [r for r in ops_json(_plan())["kernels"] if r["kind"] == "host"]
    assert {(r["phase"], r["kernel"]) for r in rows} == {("fwd", "zero3 list collectives"),
                                                        ("bwd", "zero3 list collectives")}
    assert all(r["count"] == 0 for r in rows)


def test_off_without_zero3_or_data_parallelism():
    """The keys only act on ZeRO-3 over more than one rank."""
    s = _plan().scenario
    par1 = load_scenario(SCENARIO, ["parallel.zero=1"]).parallel
    assert not Z3.applies(par1, s.stack)
    assert Z3.applies(s.parallel, s.stack)


def test_negative_key_refused_with_one_line():
    with pytest.raises(SimtrainError) as e:
        load_scenario(SCENARIO, ["stack.zero3_reduce_rank_ops=-1"])
    msg = str(e.value)
    assert "zero3_reduce_rank_ops" in msg and "-1" in msg and "\n" not in msg


def test_report_says_how_much_compute_is_the_gpu_waiting_for_the_host():
    """The breakdown books the host's loop as compute (it holds the main stream); the
    report and the JSON say how much: 96 layers x 365.6 ms, as hand-counted above. With
    synchronized fetches the reduce-scatters' loops run beside the backward: only the 11
    gathers' loops per layer (96 x 11 x 21.504 ms) are the GPU waiting."""
    from simtrain.analysis.report import text_report
    from simtrain.analysis.run import simulate_plan
    r = simulate_plan(_plan(LEGACY))
    hand = 96 * (11 * 1536 * 2 + 4 * 1536 * 3) * 7e-6
    assert r.to_dict()["host_wait_s"] == pytest.approx(hand, rel=1e-9)
    assert "waiting for the host" in text_report(r)
    synced = simulate_plan(_plan())
    assert synced.to_dict()["host_wait_s"] == pytest.approx(96 * 11 * 1536 * 2 * 7e-6, rel=1e-9)
    plain = simulate_plan(_plan(OFF + LEGACY))
    assert "host_wait_s" not in plain.to_dict() and "waiting for the host" not in text_report(plain)
