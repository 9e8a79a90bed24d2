"""PyTorch FSDP1 costs of llm-foundry's Composer runs (stacks/llm-foundry.toml), each against
a hand calculation: the FlatParameter gradient assembled by autograd's split backward."""

from __future__ import annotations

import dataclasses

import pytest

from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.hardware.devices import get_device
from simtrain.workload.costs import layer_cost
from simtrain.workload.ops import layer_ops

CASE_7B = "mpt-7b-h100-512gpu-s2048-mb6-ls"  # FULL_SHARD (ZeRO-3), 512 H100s
CASE_1B = "mpt-1b-h100-512gpu-s2048-mb12-ls"  # SHARD_GRAD_OP (ZeRO-2)


def _case(name):
    case = next(c for c in load_reference() if c.name == name)
    return case_scenario(case)


def _cats(s, dev, stack=None, par=None):
    ops = layer_ops(s.model, par or s.parallel, dev, stack or s.stack, s.training.seq_len,
                    grad_precision=s.training.grad_precision)
    return [o for o in ops if o.name == "fsdp flat grad cat"]


def test_flat_gradient_cat_once_per_block_backward() -> None:
    s = _case(CASE_7B)
    dev = get_device("H100-SXM")
    assert s.stack.name == "llm-foundry" and s.stack.fsdp_flat_grad_copy
    (cat,) = _cats(s, dev)
    assert (cat.phase, cat.segment, cat.kernels, cat.kind) == ("bwd", 0, 1, "memory")
    # hand calculation, MPT-7B block (d = 4,096, MLP 4d): Wqkv 4,096 x 12,288 + out 4,096^2
    # + up and down 2 x 4,096 x 16,384 = 201,326,592 weight elements (biases, norms left out);
    # the cat reads and writes bf16, 2 + 2 B, x1.3 = 5.2 B per element
    w = 4096 * 12288 + 4096 * 4096 + 2 * 4096 * 16384
    assert w == 201_326_592
    assert cat.nbytes == pytest.approx(5.2 * w, rel=1e-12)
    # H100 streams 3.35 TB/s x 0.87 and pays 2 us per kernel:
    # 1,046,898,278 B / 2.9145e12 B/s = 359.20 us, + 2 us = 361.20 us per block and micro-batch
    assert cat.seconds == pytest.approx(361.20e-6, rel=1e-4)
    # the block's backward grows by exactly that; its forward does not
    off = dataclasses.replace(s.stack, fsdp_flat_grad_copy=False)
    on_c, off_c = (layer_cost(s.model, s.parallel, dev, s.training.seq_len, st, grad_precision="bf16")
                   for st in (s.stack, off))
    assert on_c.fwd == off_c.fwd and on_c.recompute == off_c.recompute
    assert sum(on_c.bwd_input) - sum(off_c.bwd_input) == pytest.approx(cat.seconds * on_c.launch_factor[1], rel=1e-9)


def test_flat_gradient_cat_under_shard_grad_op_and_not_without_sharding() -> None:
    s = _case(CASE_1B)
    dev = get_device("H100-SXM")
    assert s.parallel.zero == 2
    (cat,) = _cats(s, dev)
    # MPT-1B block, d = 2,048: 12 d^2 = 50,331,648 weight elements, 5.2 B each
    assert cat.nbytes == pytest.approx(5.2 * 12 * 2048 ** 2, rel=1e-12)
    # no FSDP sharding (ZeRO-0/1) or a single replica: no flat parameter to assemble
    for par in (dataclasses.replace(s.parallel, zero=1), dataclasses.replace(s.parallel, zero=0)):
        assert not _cats(s, dev, par=par)
    # other stacks do not have it (FSDP2's torchtitan has its own copy-in instead)
    from simtrain.scenario.stack import Stack
    assert not Stack().fsdp_flat_grad_copy
