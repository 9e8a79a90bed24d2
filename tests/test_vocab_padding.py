"""Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by (128) x TP
(megatron/training/tokenizer/tokenizer.py _vocab_size_with_padding at core_r0.8.0), so its
output layer and loss run over the padded width: stack.vocab_pad_multiple. Without it,
GPT-2's 50,257 tokens over TP 4 leave 12,564 columns per rank, not a multiple of 8, and the
output GEMM falls to the misaligned kernels (gemm_misaligned_factor)."""

from __future__ import annotations

import pytest

from simtrain.hardware.devices import CATALOG
from simtrain.scenario.config import load_scenario
from simtrain.workload.compute import gemm_time
from simtrain.workload.ops import head_ops, padded_vocab


def test_padding_by_hand() -> None:
    assert padded_vocab(50257, 4, 128) == 50688  # 99 x 512
    assert padded_vocab(128256, 8, 128) == 129024  # 126 x 1024
    assert padded_vocab(51200, 8, 128) == 51200  # SC21's vocabulary is already padded
    assert padded_vocab(50257, 4, 1) == 50260 and padded_vocab(50257, 1, 1) == 50257


def test_gpt3_output_gemm_runs_aligned() -> None:
    s = load_scenario("nemo-gpt3-175b-128")  # megatron-core: vocab_pad_multiple 128, TP 4
    assert s.stack.vocab_pad_multiple == 128
    ops = head_ops(s.model, s.parallel, CATALOG["H100-SXM"], s.stack, s.training.seq_len)
    out = next(o for o in ops if o.name == "output" and o.phase == "fwd")
    # 2,048 tokens x 12,288 hidden -> 12,672 columns: the aligned GEMM's time (the kernel
    # model itself), not the misaligned 12,564-column one's (4.7x slower)
    dev = CATALOG["H100-SXM"]
    aligned, misaligned = gemm_time(dev, 2048, 12672, 12288), gemm_time(dev, 2048, 12564, 12288)
    assert out.seconds == pytest.approx(aligned, rel=1e-9)
    assert misaligned > 3 * aligned


def test_one_line_for_a_bad_multiple(capsys) -> None:
    from tests.test_bad_files import assert_one_line_error

    assert_one_line_error(["run", "--set", "stack.vocab_pad_multiple=0"], capsys, "vocab_pad_multiple", "128")


def test_megatron_flags_pad_once() -> None:
    # --make-vocab-size-divisible-by 64 at TP 2: 50,257 -> 50,304 (a multiple of 128), and the
    # stack pads to the same multiple, not to its own 128 x 2 (which would give 50,432)
    from simtrain.scenario.megatron_args import parse

    flags = parse("--num-layers 4 --hidden-size 1024 --num-attention-heads 16 --seq-length 2048 --micro-batch-size 1 "
                  "--bf16 --vocab-size 50257 --tensor-model-parallel-size 2 --make-vocab-size-divisible-by 64")
    s = load_scenario("nemo-8b-8", ["cluster.gpus=8"], megatron=flags)
    assert s.stack.name == "megatron-core" and s.model.vocab_size == 50304
    assert padded_vocab(s.model.vocab_size, s.parallel.tp, s.stack.vocab_pad_multiple) == 50304
