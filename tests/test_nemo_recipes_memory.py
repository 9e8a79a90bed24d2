"""The 12 NVIDIA DGX Cloud runs of NeMo 24.09 (dgxc-benchmarking v24.11.1) ran, so their
memory must fit: their recipes' optimizer (Apex's distributed_fused_adam, grad_sync_dtype
bf16, contiguous gradient buffer) holds gradients in bf16, 2 B per parameter, which the
scenarios say. Checked against the hand count of Llama 3.1 8B's model states."""

from __future__ import annotations

import pytest

from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload.memory import estimate

RUNS = ["nemo-8b-8", "nemo-8b-128", "nemo-70b-64", "nemo-70b-512", "nemo-70b-2048", "nemo-405b-576",
        "nemo-405b-2304", "nemo-gpt3-175b-128", "nemo-gpt3-175b-2048", "nemo-nemotron4-15b-16",
        "nemo-nemotron4-15b-64", "nemo-nemotron4-15b-2048",
        # NeMo 24.07's FP8 runs, the layouts and recipes of three of them in FP8
        "nemo-fp8-8b-8", "nemo-fp8-70b-64", "nemo-fp8-gpt3-175b-128"]


@pytest.mark.parametrize("name", RUNS)
def test_recipe_runs_fit(name: str) -> None:
    s = load_scenario(name)
    assert s.training.grad_precision == "bf16" and s.stack.grad_buffer_passes == ()
    assert estimate(make_plan(s)).fits_in_memory


def test_llama31_8b_model_states_by_hand() -> None:
    # 8.03e9 parameters (Llama 3.1 8B), TP1 PP1, distributed optimizer over DP x CP = 8:
    # bf16 weights 2 B + bf16 gradients 2 B + (fp32 master 4 + Adam 4 + 4) / 8 B
    st = estimate(make_plan(load_scenario("nemo-8b-8"))).per_stage[0]
    n = st.params
    assert n == pytest.approx(8.03e9, rel=0.01)
    assert (st.parameters, st.gradients, st.optimizer) == pytest.approx((2 * n, 2 * n, 12 * n / 8), rel=1e-9)


def test_bf16_optimizer_states_by_hand() -> None:
    """The DGX Cloud Nemotron-4 340B recipe's optimizer dtype bf16 (Apex DistributedFusedAdam
    keeps its parameter shard and both moments in it): 2 + 2 + 2 B per parameter of the 1/DP
    shard, against 4 + 4 + 4 for fp32 states; the 128-GPU run (DP 2), which ran, fits."""
    from simtrain.analysis.validation import case_scenario, load_reference

    case = next(c for c in load_reference() if c.name == "dgxc-nemotron4-340b-128gpu-bf16")
    s = case_scenario(case)
    assert (s.stack.optimizer_master, s.stack.optimizer_moments) == ("bf16", "bf16")
    rep = estimate(make_plan(s))
    st = rep.per_stage[0]
    assert st.optimizer == pytest.approx(6 * st.params / 2, rel=1e-9)
    fp32 = estimate(make_plan(case_scenario(case, ('stack.optimizer_master="fp32"', 'stack.optimizer_moments="fp32"'))))
    assert fp32.per_stage[0].optimizer == pytest.approx(12 * st.params / 2, rel=1e-9)
    assert rep.fits_in_memory and not fp32.fits_in_memory


def test_unknown_optimizer_master_is_one_line() -> None:
    from simtrain.scenario.errors import SimtrainError

    with pytest.raises(SimtrainError, match="optimizer_master"):
        load_scenario(None, ['stack.optimizer_master="fp16"'])
