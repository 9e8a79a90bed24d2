"""DeepSpeed's pipeline-engine gradient path as stack data (stacks/megatron-deepspeed.toml):
the per-micro-batch gradient accumulation pass, the bf16 optimizer's fp32 all-reduce and
ZeRO-1's parameter all-gather inside optimizer.step(). Each checked against a hand count."""

from __future__ import annotations

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.gradwork import grad_accum_seconds, tensors_per_layer
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario

# Llama 3 8B, TP2 PP4 DP2 on 16 H100s (tests/conftest.py small_overrides) with ZeRO-1
BASE = ['model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=2",
        "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
        "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.zero=1",
        "parallel.overlap_grad_reduce=false"]


# Parameter tensors of a Llama 3 8B layer, by hand: the fused QKV, output, fc1 (gate and up)
# and fc2 weights and the two RMSNorm weights; no biases
LLAMA_TENSORS = 6


def test_tensors_per_layer_by_hand():
    from simtrain.scenario.models import require_model

    assert tensors_per_layer(require_model("llama3-8b")) == LLAMA_TENSORS
    # GPT: four weights and four biases, two LayerNorms with weight and bias
    assert tensors_per_layer(require_model("gpt-18b")) == 12


def _records(extra: list[str]):
    plan = make_plan(load_scenario(None, BASE + extra))
    return plan, Engine(plan).run()


@pytest.mark.parametrize("precision,per_param,kernels", [("fp16", 6.0, 1), ("bf16", 18.0, 2)])
def test_grad_accum_pass_is_bytes_over_hbm_rate_after_every_backward(precision, per_param, kernels):
    """fp16: autograd's in-place add into param.grad, 2 + 2 read + 2 written = 6 B/param,
    from the second micro-batch on (AccumulateGrad takes the first gradient as it is);
    bf16: BF16_Optimizer.update_hp_grads, 2 + 4 + 4 + 4 + 4 = 18 B/param and two kernels
    (to(fp32), add_) per tensor, after every micro-batch. Per micro-batch: bytes x params /
    (HBM rate x efficiency) + kernels x per-kernel overhead, on every stage."""
    plan, recs = _records([f'training.precision="{precision}"', "stack.grad_accum_bytes=6",
                           "stack.grad_accum_bytes_bf16=18"])
    dev = plan.device
    acc, first = grad_accum_seconds(plan)
    assert first == (precision == "bf16")
    for st in plan.stages:
        hand = (per_param * st.params / (dev.hbm_bytes_per_s * dev.memory_efficiency)
                + kernels * LLAMA_TENSORS * st.layers * dev.kernel_overhead_s)
        assert acc[st.index] == pytest.approx(hand, rel=1e-12)
    rank0 = plan.simulated[0]
    spans = [r for r in recs if r.device == rank0 and r.label == "grad-accum"]
    m = plan.layout.microbatches
    runs = m if first else m - 1
    assert len(spans) == runs
    assert sum(r.duration for r in spans) == pytest.approx(runs * acc[plan.stages[0].index], rel=1e-9)


def test_no_grad_accum_pass_by_default():
    plan, recs = _records([])
    assert grad_accum_seconds(plan) == ({}, False)
    assert not any(r.label == "grad-accum" for r in recs)


def test_bloom_middle_stage_accumulation_by_hand():
    """BLOOM-176B, TP4, six layers on a middle stage: 6 x 12 h^2 / 4 = 3.70e9 parameters
    (biases and LayerNorms add 0.1%); 18 B each = 66.6 GB per micro-batch, at the A100-80GB's
    2.039 TB/s times its streaming efficiency, plus the per-kernel overhead."""
    import tomllib
    from pathlib import Path

    ref = tomllib.loads((Path(__file__).resolve().parent.parent / "simtrain/data/reference.toml").read_text())
    s = load_scenario(ref["cases"]["bloom-176b-384gpu-iter85376"]["scenario"])
    assert s.stack.name == "megatron-deepspeed" and s.training.precision == "bf16"
    plan = make_plan(s)
    mid = plan.stages[1]
    h = 14336
    assert mid.layers == 6 and mid.params == pytest.approx(6 * 12 * h * h / 4, rel=2e-3)
    dev = plan.device
    # plus 2 kernels (to, add_) for each of the 6 x 12 parameter tensors
    hand = 18 * 6 * 12 * h * h / 4 / (dev.hbm_bytes_per_s * dev.memory_efficiency) + 2 * 6 * 12 * dev.kernel_overhead_s
    assert grad_accum_seconds(plan)[0][mid.index] == pytest.approx(hand, rel=3e-3)
    assert 0.03 < hand < 0.05  # ~40 ms per micro-batch, 128 micro-batches per step


def test_in_step_param_gather_is_exposed_at_the_end():
    """param_gather = "in-step": the all-gather of the updated parameters (2 bytes each, the
    stage's whole shard) follows the optimizer and the step waits for it; "overlapped"
    gathers at the step's start instead."""
    plan, recs = _records(['stack.param_gather="in-step"'])
    rank0 = plan.simulated[0]
    gathers = [r for r in recs if r.device == rank0 and r.label == "all-gather(dp)"]
    opt = [r for r in recs if r.device == rank0 and r.kind == "opt"][0]
    assert gathers and all(r.start >= opt.end - 1e-12 for r in gathers)
    st = plan.stages[0]
    assert sum(r.nbytes for r in gathers) == pytest.approx(2 * st.params, rel=1e-9)
    wait = [r for r in recs if r.device == rank0 and r.kind == "dp" and r.label == "wait params"]
    assert len(wait) == 1 and wait[0].end == pytest.approx(max(r.end for r in gathers), rel=1e-12)
    _, over = _records([])
    first = min(r.start for r in over if r.label == "all-gather(dp)")
    assert first == pytest.approx(0.0, abs=1e-9)


def test_bf16_all_reduce_costs_a_ring_reduce_scatter_plus_all_gather():
    """dp_reduce_bf16 = "all-reduce" (DeepSpeed's BF16_Optimizer): every rank receives the
    whole fp32 gradient, a ring all-reduce = reduce-scatter + all-gather, ~2x the time of the
    reduce-scatter alone (DP 2 here: bandwidth terms S/2 vs S, plus per-call latency).
    fp16 runs keep the reduce-scatter."""
    def dp(extra):
        plan, recs = _records(extra)
        rank0 = plan.simulated[0]
        return {r.label: r.duration for r in recs if r.device == rank0 and r.stream == "comm"
                and r.label.endswith("(dp)") and not r.label.startswith("all-gather")}
    rs = dp(['training.precision="bf16"'])
    ar = dp(['training.precision="bf16"', 'stack.dp_reduce_bf16="all-reduce"'])
    assert list(rs) == ["reduce-scatter(dp)"] and list(ar) == ["all-reduce(dp)"]
    assert 1.7 < ar["all-reduce(dp)"] / rs["reduce-scatter(dp)"] < 2.2
    fp16 = dp(['training.precision="fp16"', 'stack.dp_reduce_bf16="all-reduce"'])
    assert list(fp16) == ["reduce-scatter(dp)"]


def test_fp16_gradients_are_two_bytes():
    plan = make_plan(load_scenario(None, BASE + ['training.precision="fp16"', 'training.grad_precision="fp16"']))
    assert plan.grad_bytes == 2


def test_megatron_lm_2021_fp16_accumulates_in_place_and_fsdp_only_its_shard():
    """Megatron-LM of 2021 (stacks/megatron-lm-2021.toml), fp16: 6 B per parameter held, from
    the second micro-batch; under ZeRO-3 each rank accumulates its 1/DP shard only."""
    from simtrain.scenario.stack import load_stack_file

    values, _, _ = load_stack_file("megatron-lm-2021")
    assert values["grad_accum_bytes"] == 6.0 and values["grad_accum_bytes_bf16"] == 10.0
    base = ['cluster.stack="megatron-lm-2021"', 'training.precision="fp16"']
    plan = make_plan(load_scenario(None, BASE + base))
    dev = plan.device
    acc, first = grad_accum_seconds(plan)
    st = plan.stages[0]
    assert not first
    assert acc[st.index] == pytest.approx(6 * st.params / (dev.hbm_bytes_per_s * dev.memory_efficiency)
                                          + LLAMA_TENSORS * st.layers * dev.kernel_overhead_s, rel=1e-12)
    fsdp = make_plan(load_scenario(None, BASE + base + ["parallel.zero=3"]))
    L = fsdp.layout
    st3 = fsdp.stages[0]
    assert grad_accum_seconds(fsdp)[0][st3.index] == pytest.approx(
        6 * st3.params / (L.dp * L.cp) / (dev.hbm_bytes_per_s * dev.memory_efficiency)
        + LLAMA_TENSORS * st3.layers * dev.kernel_overhead_s, rel=1e-12)


def test_megatron_2022_gathers_the_distributed_optimizers_parameters_in_step():
    """Megatron-LM of 2022-2023 (the MegaScale baseline's commit 285068c8) all-gathers the
    updated parameters after optimizer.step(), before the step ends (training.py:438-440);
    Megatron-Core's megatron-core stack overlaps it with the next forward."""
    from simtrain.analysis.validation.cases import case_scenario, load_reference

    cases = {c.name: c for c in load_reference()}
    old = case_scenario(cases["megascale-175b-1024gpu-megatron"])
    assert (old.stack.name, old.parallel.zero, old.stack.param_gather) == ("megatron-lm-2022", 2, "in-step")
    new = load_scenario(None, BASE + ['cluster.stack="megatron-core"'])
    assert new.stack.param_gather == "overlapped"
