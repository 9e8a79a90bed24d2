"""Megatron-LM's default unfused vocab-parallel cross-entropy against its fused form, on the
Megatron-LM README's GPT 1.7B (TP1, 48 H100s, 4 micro-batches of 4,096 tokens, vocab
131,072): the step grows by the loss's extra memory traffic, checked by hand from the
datasheet bandwidth, not from the simulator's kernel table."""

from __future__ import annotations

import pytest

from simtrain.analysis.run import simulate_plan
from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.engine.plan import make_plan


def _step(ce: str) -> float:
    case = next(c for c in load_reference() if c.name == "megatron-h100-gpt-1.7b-48gpu")
    return simulate_plan(make_plan(case_scenario(case, (f'stack.cross_entropy="{ce}"',)))).step_time_s


def test_unfused_loss_costs_its_memory_traffic() -> None:
    # Per logit, Megatron's unfused loss (cross_entropy.py at core_r0.8.0) moves at least
    # .float() 2+4, max 4, subtract 4+4, exp 4+4, sum 4, divide 4+4 = 38 B forward and
    # multiply 4+4 plus the cast back 4+2 = 14 B backward: 52 B; a fused loss at least 2 B
    # forward (read the bf16 logits) and 4 B backward (read them, write their gradient).
    # Per micro-batch 4,096 x 131,072 logits on the last (only) stage, 4 micro-batches per
    # step, at the H100's 3.35 TB/s datasheet bandwidth: the least the unfused loss can add.
    logits = 4096 * 131072
    floor = 4 * (52 - 6) * logits / 3.35e12  # 29.5 ms
    added = _step("unfused") - _step("fused")
    # at least the streaming floor, at most 1.6x it (achievable bandwidth ~0.87 of peak,
    # element-wise kernels' overheads ~1.3x, a few extra launches)
    assert floor == pytest.approx(29.5e-3, rel=0.01)
    assert floor <= added <= 1.6 * floor
