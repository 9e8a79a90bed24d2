"""Op-level selective checkpointing (torchtitan) saves no all-gather output: its _save_list
holds mm, SDPA, reduce_scatter_tensor and max. With sequence-parallel TP the backward gathers
each block's input again: two all-gathers per layer on the network when TP communication is
not overlapped, or, with async TP, pipelined with the recomputed GEMMs that read it."""

from __future__ import annotations

from collections import Counter

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload.ops import layer_ops

LAYERS = 4
BASE = ['model.name="llama3-8b"', f"model.num_hidden_layers={LAYERS}", 'cluster.topology="dgx-h100"',
        "cluster.gpus=16", "parallel.tp=8", "parallel.pp=1", "parallel.dp=2", "parallel.vp=1",
        "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", 'schedule.name="1f1b"',
        "training.seq_len=4096", "training.global_batch=4", "parallel.micro_batch=1", 'cluster.stack="torchtitan"']


def _gathers(overrides: list[str]) -> tuple[int, int]:
    plan = make_plan(load_scenario(None, BASE + overrides))
    recs = [r for r in Engine(plan).run() if r.device == 0 and r.kind == "tp"]
    redo = Counter(r.label for r in recs if r.label == "all-gather(tp)")
    return sum(redo.values()), plan.layout.microbatches


@pytest.mark.parametrize("recompute,sp,per_layer", [("op-selective", "true", 2), ("op-selective", "false", 0),
                                                    ("none", "true", 0), ("selective", "true", 0)])
def test_op_selective_reruns_two_all_gathers_per_layer(recompute: str, sp: str, per_layer: int) -> None:
    base, mbs = _gathers([f'parallel.recompute="none"', f"parallel.sequence_parallel={sp}",
                          "engine.overlap_tp_comm=false"])
    n, mbs = _gathers([f'parallel.recompute="{recompute}"', f"parallel.sequence_parallel={sp}",
                       "engine.overlap_tp_comm=false"])
    # the backward's own all-gathers (output gradients) are there either way; the
    # recomputation adds two per layer and micro-batch
    assert n - base == per_layer * LAYERS * mbs


def test_async_tp_hides_the_regather_behind_the_recomputed_gemms_by_hand() -> None:
    """With async TP the re-gather is pipelined with the GEMMs that read the gathered input
    and are recomputed: attention's wk (kv / (q + 2 kv) of the fused QKV: 1024 / 6144 = 1/6
    for Llama 3 8B) and the MLP's w3 (half of mlp up). Each block waits max(0, C - G (TP-1)/TP)."""
    from simtrain.engine.tpalone import tp_gather_seconds
    from simtrain.workload.costs import _launch_factor, _op_selective

    s = load_scenario(None, BASE + ['parallel.recompute="op-selective"', "parallel.sequence_parallel=true",
                                    "engine.overlap_tp_comm=true"])
    plan = make_plan(s)
    m = s.model
    assert m.num_key_value_heads / (m.num_attention_heads + 2 * m.num_key_value_heads) == 1 / 6
    c = tp_gather_seconds(s, plan.layout, plan.topology)  # one all-gather of the block input, alone
    ops = layer_ops(m, s.parallel, plan.device, s.stack, s.training.seq_len, tp_gather_s=c)
    g = {o.name: o.seconds for o in ops if o.kind == "gemm" and o.phase == "fwd"}
    # the forward's own pipelined wait for the whole QKV: the same formula
    fwd_wait = sum(o.seconds for o in ops if o.name == "tp overlap wait: qkv" and o.phase == "fwd")
    assert fwd_wait == pytest.approx(max(0.0, c - g["qkv"] * 7 / 8), rel=1e-9)
    hand = max(0.0, c - g["qkv"] / 6 * 7 / 8) + max(0.0, c - g["mlp up"] / 2 * 7 / 8)
    assert hand > 0  # a GQA model's wk cannot cover a TP8 gather of its input
    # the layer's recompute is the recomputed kernels plus those waits
    kf = _launch_factor(ops, ("fwd",), s.stack, s.stack.fsdp_unit_us * 1e-6 if s.parallel.zero == 3 else 0.0)
    kernels, _ = _op_selective(ops, m, kf)
    assert plan.stages[0].layer.recompute - kernels == pytest.approx(hand, rel=1e-9)


@pytest.mark.parametrize("fused", [False, True])
def test_async_tp_input_gradient_reduce_scatter_of_separate_linears(fused: bool) -> None:
    """Inductor's micro-pipeline TP fuses a reduce-scatter only with the matmul producing its
    input; torchtitan's separate wq, wk, wv (w1, w3) make the backward's input gradient a sum
    of matmuls, so its reduce-scatter runs alone (the block's all-gather's bytes, C seconds)
    after DTensor's sequence-dim copy, and the QKV and MLP-up input-gradient GEMMs run whole."""
    from simtrain.engine.tpalone import tp_gather_seconds

    ov = ['parallel.recompute="none"', "parallel.sequence_parallel=true", "engine.overlap_tp_comm=true",
          f"stack.async_tp_input_grad_fused={str(fused).lower()}"]
    s = load_scenario(None, BASE + ov)
    plan = make_plan(s)
    c = tp_gather_seconds(s, plan.layout, plan.topology)
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len, tp_gather_s=c)
    alone = [o for o in ops if o.name == "tp reduce-scatter (unfused)"]
    first = {o.name: o for o in ops if o.kind == "gemm" and o.phase == "bwd" and o.name in ("qkv", "mlp up")}
    sums = [o for o in ops if o.name == "tp chunk sum" and o.phase == "bwd"]
    # the same GEMMs without async TP (no TP shards)
    plain = load_scenario(None, BASE + ['parallel.recompute="none"', "parallel.sequence_parallel=true",
                                        "engine.overlap_tp_comm=false"])
    whole = {o.name: o for o in layer_ops(plain.model, plain.parallel, plan.device, plain.stack, s.training.seq_len)
             if o.kind == "gemm" and o.phase == "bwd"}
    if fused:  # one GEMM per TP shard
        assert not alone and len(sums) == 2 and all(o.kernels == 8 * whole[o.name].kernels for o in first.values())
    else:
        assert [o.seconds for o in alone] == [c, c] and {o.segment for o in alone} == {0, 1} and not sums
        for name, o in first.items():
            assert o.kernels == whole[name].kernels and o.seconds == pytest.approx(whole[name].seconds, rel=1e-12)
