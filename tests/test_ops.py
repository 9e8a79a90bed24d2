"""The per-layer kernel table (simtrain run --ops) and its arithmetic."""

from __future__ import annotations

import json

import pytest

from simtrain.cli import main
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload.ops import layer_ops


def test_layer_cost_is_the_sum_of_its_kernels(small_overrides):
    s = load_scenario(None, small_overrides)
    plan = make_plan(s)
    lc = plan.stages[0].layer
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len)
    assert lc.launch_factor == (1.0, 1.0)  # an 8B layer is GPU-bound
    assert sum(lc.fwd) == pytest.approx(sum(o.seconds for o in ops if o.phase == "fwd"), rel=1e-12)
    assert lc.bwd_weight == pytest.approx(sum(o.seconds for o in ops if o.phase == "wgrad"), rel=1e-12)
    # every GEMM has a forward, an input-gradient and a weight-gradient kernel of equal FLOPs
    for name in ("qkv", "out proj", "mlp up", "mlp down"):
        flops = {o.phase: o.flops for o in ops if o.name == name}
        assert flops["fwd"] == flops["bwd"] == flops["wgrad"] > 0
    # QKV of Llama 3 8B on TP2: 2 * tokens * hidden * (heads + 2 kv) * head_dim / TP
    qkv = next(o for o in ops if o.name == "qkv" and o.phase == "fwd")
    assert qkv.flops == 2 * 2048 * 4096 * (32 + 2 * 8) * 128 / 2


def test_run_ops_prints_the_table_and_json(small_overrides, capsys):
    args = ["run", "--ops", "--no-progress"] + [x for o in small_overrides for x in ("--set", o)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "per-layer kernels" in out and "attention" in out and "mlp up" in out
    assert main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["ops"]["kernels"]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, rel=1e-9)
    assert {r["kind"] for r in rows} == {"gemm", "attention", "memory"}
    assert data["ops"]["stack"] == "llama3-meta"


def test_op_selective_recompute_is_torchtitans_every_second_matmul(small_overrides):
    # torchtitan's op-level SAC recomputes the 2nd, 4th and 6th matmul of a Llama block (wk,
    # wo, w3) and every elementwise op, and keeps the other matmuls' and SDPA's outputs.
    # Llama 3 8B (h = q = 4096, kv = 1024, f = 14336) on TP2, 2,048 tokens of micro-batch 1:
    # recomputed FLOPs = 2 * tokens * (h*kv + q*h + h*f) / TP.
    from simtrain.workload.memory import layer_activation_bytes

    s = load_scenario(None, small_overrides + ['parallel.recompute="op-selective"'])
    lc = make_plan(s).stages[0].layer
    assert lc.recompute_flops == pytest.approx(2 * 2048 * (4096 * 1024 + 4096 * 4096 + 4096 * 14336) / 2, rel=1e-12)
    none = make_plan(load_scenario(None, small_overrides)).stages[0].layer
    full = make_plan(load_scenario(None, small_overrides + ['parallel.recompute="full"'])).stages[0].layer
    assert 0 < lc.recompute < full.recompute and none.recompute == 0
    # saved per token, TP1: block input 2h + w2 output 2h + wq 2q + SDPA output 2q + wv 2kv
    # + w1 2f + log-sum-exp 4 B per head = 63,616 B, against about 139 kB without recomputation
    m = s.model
    op = layer_activation_bytes(m, 2048, 1, 1, False, "op-selective")
    assert op == 2048 * (4 * 4096 + 4 * 4096 + 2 * 1024 + 2 * 14336 + 4 * 32)
    assert layer_activation_bytes(m, 2048, 1, 1, False, "full") < op < layer_activation_bytes(m, 2048, 1, 1, False, "none")


def test_run_ops_shows_the_overlapped_tp_waits(small_overrides, capsys):
    """With TP communication overlapped at TP 8 (megatron-core's userbuffers), GQA's QKV and
    the attention output projection of Llama 3 8B are too narrow to hide their transfers:
    `tp overlap wait` rows of kind comm in the text table and in --json, each the closed form
    of simtrain.workload.ops._tp_overlap_waits (tests/test_torchtitan_kernels.py)."""
    over = small_overrides + ["parallel.tp=8", "parallel.pp=2", "parallel.dp=1", 'cluster.stack="megatron-core"',
                              "parallel.sequence_parallel=true", "engine.overlap_tp_comm=true"]
    args = ["run", "--ops", "--no-progress"] + [x for o in over for x in ("--set", o)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tp overlap wait: qkv" in out and "tp overlap wait: out proj" in out
    assert main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["ops"]["kernels"]
    waits = [r for r in rows if r["kind"] == "comm"]
    assert waits and all(r["kernel"].startswith("tp overlap wait: ") and r["seconds"] > 0 for r in waits)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, rel=1e-9)
