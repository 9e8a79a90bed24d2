"""The default scenario end to end, and the effect of batch size per DP replica."""

import pytest

from simtrain.analysis.run import simulate
from simtrain.scenario.config import load_scenario


@pytest.fixture(scope="module")
def row1():
    return simulate(load_scenario(None))


def test_default_scenario_is_llama3_table4_row1(row1):
    assert row1.num_gpus == 8192
    assert row1.layout["tp"] == 8 and row1.layout["pp"] == 16 and row1.layout["dp"] == 64
    assert row1.layout["microbatches_per_replica"] == 32
    assert 0.2 < row1.mfu < 0.7
    assert row1.mfu <= row1.hfu <= 1.0


def test_doubling_dp_at_fixed_global_batch_lowers_mfu_and_raises_bubble(row1):
    # Table 4 row 1 -> row 2: 16,384 GPUs, DP128, 16 sequences per replica
    row2 = simulate(load_scenario(None, ["cluster.gpus=16384", "parallel.dp=128"]))
    assert row2.layout["microbatches_per_replica"] == 16
    assert row2.mfu < row1.mfu
    assert row2.bubble_fraction > row1.bubble_fraction
