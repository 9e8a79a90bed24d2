"""FP8 weights (training.fp8_params: Transformer Engine's fp8_model_init, Megatron-Core's
--fp8-param-gather, NeMo's fp8_params): the linear weights held only in FP8 (the FP8 weight
and its transpose, no bf16 copy) and all-gathered by the distributed optimizer in FP8.
Checked by hand-counted bytes of Llama 3 8B's linears and in the engine's DP records."""

from __future__ import annotations

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.megatron_args import parse
from simtrain.workload.memory import estimate
from tests.test_bad_files import assert_one_line_error

OV = ["parallel.tp=2", "parallel.cp=1", "parallel.dp=4", "parallel.recompute=none", 'training.precision="fp8"']
# Llama 3 8B's linears per layer: 4096 x 6144 (QKV) + 4096 x 4096 (out) + 4096 x 28672
# (gate+up) + 14336 x 4096 (down), 32 layers, TP 2
LINEAR = 32 * (4096 * 6144 + 4096 * 4096 + 4096 * 28672 + 14336 * 4096) / 2


def test_memory_drops_the_bf16_copy_by_hand() -> None:
    a = estimate(make_plan(load_scenario("nemo-8b-8", OV))).per_stage[0]
    b = estimate(make_plan(load_scenario("nemo-8b-8", OV + ["training.fp8_params=true"]))).per_stage[0]
    assert a.parameters - b.parameters == pytest.approx(2 * LINEAR)
    # what stays bf16: the embedding, output layer and norm weights, 2 B each
    assert b.parameters == pytest.approx(2 * (a.params - LINEAR) + 2 * LINEAR)


def test_param_all_gather_moves_fp8_weights() -> None:
    def gathered(extra: list[str]) -> float:
        plan = make_plan(load_scenario("nemo-8b-8", OV + extra))
        recs = Engine(plan).run()
        return sum(r.nbytes for r in recs if getattr(r, "label", "") == "all-gather(dp)" and r.device == 0)

    plan = make_plan(load_scenario("nemo-8b-8", OV))
    held = sum(st.params for st in plan.stages)
    bf16, fp8 = gathered([]), gathered(["training.fp8_params=true"])
    assert bf16 == pytest.approx(2 * held, rel=1e-9)
    assert fp8 == pytest.approx(2 * held - LINEAR, rel=1e-9)  # 1 B per linear weight, 2 B the rest


def test_megatron_flag_and_refusals(capsys) -> None:
    base = "--micro-batch-size 1 --seq-length 2048 --bf16"
    assert load_scenario("llama3-405b-8k", megatron=parse(f"{base} --fp8-format hybrid --fp8-param-gather")).training.fp8_params
    assert not load_scenario("llama3-405b-8k", megatron=parse(f"{base} --fp8-param-gather")).training.fp8_params
    assert_one_line_error(["run", "nemo-8b-8", "--set", "training.fp8_params=true"], capsys,
                          "training.fp8_params = True", "training.precision is 'bf16'", 'training.precision = "fp8"')
    assert_one_line_error(["run", "nemo-moe-qwen3-30b-a3b-16", "--set", "training.fp8_params=true"], capsys,
                          "training.fp8_params = True", "dense models only")
