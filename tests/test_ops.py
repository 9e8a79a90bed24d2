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
