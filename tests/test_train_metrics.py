"""Cross-entropy passes the trainer runs outside the loss (stack.train_metric_ce_passes):
Composer's two training metrics over every micro-batch's logits, as llm-foundry's MPT runs
have them (stacks/llm-foundry.toml), checked against a hand calculation."""

from __future__ import annotations

import dataclasses

import pytest

from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.hardware.devices import get_device
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.workload.costs import head_cost
from simtrain.workload.ops import head_ops

CASE = "mpt-125m-a100-40g-8gpu-s512-mb104"


@pytest.fixture(scope="module")
def mpt125m():
    case = next(c for c in load_reference() if c.name == CASE)
    # the catalog's A100-40GB as is (the plan would slow it to the slowest of the job's GPUs)
    return case_scenario(case), get_device("A100-40GB")


def test_two_fp32_cross_entropy_forwards_per_micro_batch(mpt125m) -> None:
    s, dev = mpt125m
    assert s.stack.name == "llm-foundry" and s.stack.train_metric_ce_passes == 2
    # hand calculation: t = 104 x 512 = 53,248 tokens, V = 50,368 -> 2,682,015,744 logits;
    # each pass is the eager F.cross_entropy(logits.float()) forward, 28 B per logit
    # (cast, log-softmax, NLL: 3 kernels); A100-40GB streams 1,555 GB/s x 0.85 and pays 2 us
    # per kernel: 28 x 2,682,015,744 / 1.32175e12 = 0.0568159 s, + 3 x 2 us = 0.0568219 s;
    # two passes (LanguageCrossEntropy, LanguagePerplexity): 0.113644 s
    ops = [o for o in head_ops(s.model, s.parallel, dev, s.stack, s.training.seq_len) if o.name == "train metrics"]
    assert len(ops) == 1
    (m,) = ops
    assert (m.phase, m.kind, m.kernels) == ("bwd", "memory", 6)
    assert m.nbytes == pytest.approx(2 * 28 * 53_248 * 50_368, rel=1e-12)
    assert m.seconds == pytest.approx(0.113644, rel=1e-4)
    # the last stage's backward grows by exactly that (the pass is GPU-bound, no launch factor)
    without = dataclasses.replace(s.stack, train_metric_ce_passes=0)
    with_, base = (head_cost(s.model, s.parallel, dev, s.training.seq_len, st) for st in (s.stack, without))
    assert with_.bwd_input - base.bwd_input == pytest.approx(m.seconds, rel=1e-9)
    assert (with_.fwd, with_.bwd_weight) == (base.fwd, base.bwd_weight)


def test_other_stacks_run_no_metric_passes() -> None:
    s = load_scenario(None, ['model.name="llama3-8b"', "cluster.gpus=8"])
    assert s.stack.train_metric_ce_passes == 0


@pytest.mark.parametrize("value", ["-1", "1.5"])
def test_bad_pass_counts_are_refused(value) -> None:
    with pytest.raises(SimtrainError, match="train_metric_ce_passes"):
        load_scenario(None, ['model.name="llama3-8b"', "cluster.gpus=8", f"stack.train_metric_ce_passes={value}"])
