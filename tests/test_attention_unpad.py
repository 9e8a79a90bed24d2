"""llm-foundry's attn_impl "flash" path (stack.attention_unpad): Q, K and V gathered out of
the padded batch before flash_attn_varlen_func and the output scattered back, every layer
(flash-attn bert_padding.unpad_input / pad_input), checked against a hand calculation."""

from __future__ import annotations

import dataclasses

import pytest

from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.hardware.devices import get_device
from simtrain.workload.ops import layer_ops

CASE = "mpt-7b-h100-128gpu-s2048-mb6-ls"  # attn_impl flash (FA2) in the large-scale sweep


@pytest.fixture(scope="module")
def mpt7b():
    cases = {c.name: c for c in load_reference()}
    return case_scenario(cases[CASE]), cases


def test_unpad_and_pad_bytes_and_kernels_by_hand(mpt7b) -> None:
    s, _ = mpt7b
    assert s.stack.attention_unpad and s.parallel.attention_kernel == "fa2"
    dev = get_device("H100")  # 3.35 TB/s x 0.87, 2 us per kernel
    ops = layer_ops(s.model, s.parallel, dev, s.stack, s.training.seq_len)
    moved = [o for o in ops if o.name in ("attention unpad", "attention pad")]
    # t = 6 x 2,048 = 12,288 tokens x 32 heads x 128 = 50,331,648 elements per tensor.
    # forward: 3 gathers (Q, K, V) at 5.2 B, 1 kernel each, + zeros and index_put of the
    # output at 7.8 B, 2 kernels: 23.4 B x 50,331,648 = 1.17776e9 B / 2.9145e12 B/s
    # = 404.10 us + 5 x 2 us = 414.10 us. backward: 3 x (zeros + scatter_) at 7.8 B, 2 kernels
    # each, + the output gradient's gather at 5.2 B: 28.6 B -> 1.43948e9 B = 493.90 us
    # + 7 x 2 us = 507.90 us
    fwd = sum(o.seconds for o in moved if o.phase == "fwd")
    bwd = sum(o.seconds for o in moved if o.phase == "bwd")
    assert sum(o.kernels for o in moved if o.phase == "fwd") == 5
    assert sum(o.kernels for o in moved if o.phase == "bwd") == 7
    assert fwd == pytest.approx(414.10e-6, rel=1e-4)
    assert bwd == pytest.approx(507.90e-6, rel=1e-4)
    # nothing else changes: without the key the layer is the same minus these ops
    plain = layer_ops(s.model, s.parallel, dev, dataclasses.replace(s.stack, attention_unpad=False), s.training.seq_len)
    assert sum(o.seconds for o in plain) == pytest.approx(sum(o.seconds for o in ops) - fwd - bwd, rel=1e-12)


def test_only_the_flash_rows_unpad(mpt7b) -> None:
    _, cases = mpt7b
    mpt = [c for c in cases.values() if c.group.startswith("MosaicML")]
    unpad = {c.name for c in mpt if case_scenario(c).stack.attention_unpad}
    fa2 = {c.name for c in mpt if case_scenario(c).parallel.attention_kernel == "fa2"}
    # the large-scale table's 1b, 3b, 7b and 70b rows at 128, 256 and 512 GPUs
    assert unpad == fa2 and len(unpad) == 12
