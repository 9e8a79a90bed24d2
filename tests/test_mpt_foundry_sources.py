"""MosaicML llm-foundry (Composer + PyTorch FSDP) reference cases: settings derived from the
software at the benchmark tables' commits, checked against hand calculations. Nothing here
times a kernel; the plan is built, not simulated."""

from __future__ import annotations

import re

import pytest

from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.engine.plan import make_plan

MPT = "MosaicML llm-foundry (PyTorch FSDP)"


@pytest.fixture(scope="module")
def mpt_cases() -> list:
    return [c for c in load_reference() if c.group == MPT]


def test_composer_default_and_pure_reduce_gradients_in_bf16(mpt_cases) -> None:
    # Composer v0.16.3 get_mixed_precision: DEFAULT = MixedPrecision(param_dtype=bf16,
    # buffer_dtype=bf16, reduce_dtype=None), PURE = all three bf16, FULL = none; FSDP's
    # MixedPrecision: reduce_dtype None with param_dtype set "takes on the param_dtype value".
    modes = {}
    for c in mpt_cases:
        mode = re.search(r"MP mode (\w+)", c.note).group(1)
        modes[mode] = modes.get(mode, 0) + 1
        assert case_scenario(c).training.grad_precision == ("fp32" if mode == "FULL" else "bf16"), c.name
    # the CSV: 80 PURE rows (A100-40GB tables, 2 A100-80GB) and 129 DEFAULT rows (Oct 2023 tables)
    assert modes == {"PURE": 80, "DEFAULT": 129}


def test_bf16_reduction_halves_the_gradient_bytes_per_layer(mpt_cases) -> None:
    # hand calculation: MPT-7B block = 4*d^2 + 4d (Wqkv 3d^2+3d, out_proj d^2+d)
    # + 8*d^2 + 5d (up 4d^2+4d, down 4d^2+d) + 4d (two LayerNorms) = 12 d^2 + 13 d;
    # d = 4096 -> 201,379,840 parameters; bf16 gradients: 2 bytes each (FSDP reduce-scatters
    # the whole unsharded gradient of the block: tp = 1)
    case = next(c for c in mpt_cases if c.name == "mpt-7b-a100-80g-8gpu-s2048-mb6")
    plan = make_plan(case_scenario(case))
    d = 4096
    params = 12 * d * d + 13 * d
    assert params == 201_379_840
    assert plan.stages[0].grad_bytes_per_layer == pytest.approx(2 * params, rel=1e-3)
