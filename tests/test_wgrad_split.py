"""Which weight gradients run beside a block's backward TP collective (engine.async_tp_backward).

Megatron-LM's column-parallel linear (LinearWithGradAccumulationAndAsyncCommunication)
launches the all-reduce (reduce-scatter with sequence parallelism) of its input gradient,
then computes its weight gradient while it runs. That linear reads the block's input: QKV
in attention, the MLP's up (gate + up) projection. The row-parallel output projection and
MLP down projection compute their weight gradients with their input gradients, before
the collective (LayerCost.wgrad_parts, simtrain.workload.costs.beside_linears).
"""

import dataclasses

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload.costs import beside_linears

SMALL = ["cluster.gpus=64", "parallel.dp=1", "parallel.pp=8", "parallel.vp=1", 'schedule.name="1f1b"',
         "training.global_batch=16", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
         "model.num_hidden_layers=16", "stack.nccl_channels_intra_node=0"]


def test_llama_405b_shares_of_the_weight_gradient_follow_the_linears_flops():
    # by hand, per token and TP rank alike (h = 16,384, ffn = 53,248, 128 heads and 8 KV
    # heads of 128): QKV h (128 + 16) 128 = 16,384 x 18,432; out proj 16,384 x 16,384;
    # MLP up 16,384 x 2 x 53,248; MLP down 53,248 x 16,384. Beside a collective: QKV 9.5%,
    # MLP up 54.7% of the weight-gradient FLOPs; the other 35.8% before it
    qkv, out, up, down = 16384 * 18432, 16384 * 16384, 16384 * 2 * 53248, 53248 * 16384
    total = qkv + out + up + down
    s = load_scenario("llama3-405b-8k")
    lc = make_plan(s).stages[1].layer
    (s0, b0), (s1, b1) = lc.wgrad_parts()
    assert s0 + b0 + s1 + b1 == pytest.approx(lc.bwd_weight, rel=1e-12)
    # (large GEMMs at nearly one efficiency: time shares within 3% of the FLOP shares)
    assert b0 / lc.bwd_weight == pytest.approx(qkv / total, rel=0.03)
    assert b1 / lc.bwd_weight == pytest.approx(up / total, rel=0.03)
    assert (s0 + s1) / lc.bwd_weight == pytest.approx((out + down) / total, rel=0.03)
    assert qkv / total == pytest.approx(0.095, abs=5e-4) and up / total == pytest.approx(0.547, abs=5e-4)


def test_the_linears_that_read_a_blocks_input():
    assert beside_linears(load_scenario("llama3-405b-8k").model) == {"qkv", "mlp up"}
    # multi-head latent attention: the two down projections read the block's input
    assert beside_linears(load_scenario("deepseek-v3-2048-h800").model) == {"q down", "kv down", "mlp up"}


def _engine_and_stage(overrides: list[str]):
    plan = make_plan(load_scenario("llama3-405b-8k", SMALL + overrides))
    eng = Engine(plan)
    st = plan.stages[1]
    # by hand: input gradients 2 s (attention), 3 s (MLP); weight gradients (serial,
    # beside) 1 + 1.5 s (attention), 2.5 + 5 s (MLP); two layers
    lc = dataclasses.replace(st.layer, bwd_input=(2.0, 3.0), bwd_weight=10.0, wgrad_blocks=((1.0, 1.5), (2.5, 5.0)))
    return eng, dataclasses.replace(st, layers=2, layer=lc), plan.simulated[0]


@pytest.mark.parametrize("async_tp, want", [
    # MLP 3 + 2.5 + max(5, 4), attention 2 + 1 + max(1.5, 4): 17.5 s a layer (half and half
    # of the weight gradient beside each collective would give 3 + max(5, 4) + 2 + max(5, 4) = 15)
    (True, 35.0),
    # every weight gradient, then the collective: 3 + 7.5 + 4 + 2 + 2.5 + 4 = 23 s a layer
    (False, 46.0),
])
def test_backward_segments_with_all_reduce(async_tp, want):
    eng, st, dev = _engine_and_stage(["parallel.sequence_parallel=false", f"engine.async_tp_backward={str(async_tp).lower()}"])
    segs, total = eng._backward_segs(dev, st, 4.0, True, False)
    assert total == pytest.approx(want, rel=1e-12)
    exposed = sum(d for k, d in segs if k == "tp")
    assert exposed == pytest.approx(2 * ((0.0 + 2.5) if async_tp else 8.0), rel=1e-12)
    # split off (a zero-bubble schedule's W): input gradients and collectives only
    assert eng._backward_segs(dev, st, 4.0, False, False)[1] == pytest.approx(2 * (3 + 4 + 2 + 4), rel=1e-12)


def test_backward_segments_with_sequence_parallelism():
    eng, st, dev = _engine_and_stage(["parallel.sequence_parallel=true", "engine.async_tp_backward=true"])
    eng.tp_split[dev] = (0.5, 4.0)  # all-gather (exposed), reduce-scatter (beside the weight gradient)
    segs, total = eng._backward_segs(dev, st, 4.5, True, True)
    # one layer: 0.5 + 3 + 2.5 + max(5, 4) + 0.5 + 2 + 1 + max(1.5, 4)
    assert total == pytest.approx(18.5, rel=1e-12)
    assert [k for k, _ in segs] == ["tp", "B", "B", "tp", "B", "B", "tp"]
