"""Kernel catalog: what one memory-bound operator or one fused-attention call costs.

Memory-bound operators (norms, activations, residuals, rotary embedding, dropout, softmax,
cross-entropy) are priced as *effective bytes per element* at the device's streaming
bandwidth (HBM datasheet rate x `memory_efficiency`, the share a device-to-device copy
reaches) plus a fixed GPU cost per kernel. Effective bytes = measured time x streaming
bandwidth / elements, so they fold each kernel's own inefficiency (reductions, RNG, fp32
intermediates) into one number. Measured on an H200 (tools/kernels/h200_2026-11-30_kernels.jsonl,
PyTorch 2.11 eager, 8,192 tokens x hidden 4,096 and 8,192; copy 4.19 TB/s); where no
measurement exists the value is the minimum traffic of the fused kernel (stated per entry)
times the measured overhead of a comparable fused kernel (gelu: 5.2 B measured for 4 B of
minimum traffic, x1.3). Two implementations per operator:
- "fused": one kernel, as Apex, Transformer Engine, flash-attn's fused ops or torch.compile
  run it (PyTorch's own F.rms_norm / F.layer_norm are fused kernels);
- "unfused": the eager PyTorch ops of a plain implementation (Hugging Face LlamaRMSNorm,
  apply_rotary_pos_emb, F.silu(g) * u, F.cross_entropy(logits.float())).

Fused attention: throughput curves over sequence length per GPU family, kernel, head
dimension and mask (simtrain/data/attention.toml, built by tools/kernels/build_attention_table.py
from this project's H200 measurement and the FlashAttention-2/3 papers).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "attention.toml"


@dataclass(frozen=True)
class MemOp:
    """Effective bytes per element and kernel count, forward and backward."""

    fwd_bytes: float
    bwd_bytes: float
    fwd_kernels: int
    bwd_kernels: int


# (fused, unfused) per operator; elements are those named in simtrain.workload.ops.
MEM_OPS: dict[str, tuple[MemOp, MemOp]] = {
    # RMSNorm over tokens x hidden. Fused (F.rms_norm): 62 us fwd / 127 us bwd at 8192x4096,
    # 122 / 182 us at 8192x8192 -> 7.7 / 13.5 B. Unfused (HF LlamaRMSNorm: to fp32, pow, mean,
    # rsqrt, mul, to bf16, mul by weight): 455 / 907 us and 894 / 1,735 us -> 56 / 110 B.
    "rmsnorm": (MemOp(7.7, 13.5, 1, 2), MemOp(56.0, 110.0, 7, 14)),
    # LayerNorm is one kernel in every framework (F.layer_norm, Apex): 77/99 us and
    # 141/180 us -> 9.2 / 11.8 B. No unfused variant is in use.
    "layernorm": (MemOp(9.2, 11.8, 1, 2), MemOp(9.2, 11.8, 1, 2)),
    # Residual add x + y (read 2+2, write 2): 61 us at 8192x4096 -> 7.6 B; the backward adds
    # the branch gradient into the residual stream once (same traffic).
    "residual": (MemOp(7.6, 7.6, 1, 1), MemOp(7.6, 7.6, 1, 1)),
    # GPT bias + dropout + residual add. Fused (Megatron's bias_dropout_add_fused_train):
    # dropout measured 10.1 B fwd / 10.9 B bwd (81 / 87 us), plus reading the residual (2 B).
    # Unfused: bias add 7.6 + dropout 10.1 + residual add 7.6; backward dropout 10.9 + add
    # 7.6 + bias-gradient reduction (read 2 B x 1.3).
    "bias_dropout_add": (MemOp(12.1, 10.9, 1, 1), MemOp(25.3, 21.1, 3, 3)),
    # SwiGLU over tokens x ffn (output elements). Unfused (F.silu(g) * u): 303 us fwd /
    # 498 us bwd at 8192x14336 -> 10.8 / 17.8 B. Fused: minimum traffic 6 B fwd (read g, u;
    # write out) and 10 B bwd (read dout, g, u; write dg, du), x1.3.
    "swiglu": (MemOp(7.8, 13.0, 1, 1), MemOp(10.8, 17.8, 2, 4)),
    # GELU (tanh) over tokens x ffn: 146 / 186 us at 8192x14336 -> 5.2 / 6.6 B (one kernel
    # either way; with linear biases the unfused form adds a bias-add kernel, 7.6 B, and a
    # bias-gradient reduction, 2.6 B).
    "gelu": (MemOp(5.2, 6.6, 1, 1), MemOp(5.2, 6.6, 1, 1)),
    "bias_gelu": (MemOp(5.2, 6.6, 1, 1), MemOp(12.8, 9.2, 2, 2)),
    # Rotary embedding over Q and K elements. Unfused (HF apply_rotary_pos_emb: two slices,
    # neg, cat, two muls, add, with cos/sin broadcast): 440 / 465 us for 8192 x 4096 -> 55 / 58 B.
    # Fused (Apex/TE fused RoPE): minimum 4 B each way, x1.3.
    "rope": (MemOp(5.2, 5.2, 1, 1), MemOp(55.0, 58.0, 6, 6)),
    # Rotary embedding in Meta Llama's complex form (torchtitan models/llama/model.py,
    # apply_rotary_emb at 9dec370 and 820504e): per tensor x.float() (read 2, write 4),
    # view_as_complex(x) * freqs_cis (complex64: read 4, write 4; freqs_cis is s x hd/2, small)
    # and view_as_real(..).type_as(x) (read 4, write 2): 3 kernels, 20 B minimum; the
    # backward runs the same three in reverse (cast, multiply by conj(freqs_cis), cast).
    # x1.3 as the unmeasured entries. torch.compile does not change it: Inductor "does not
    # support code generation for complex operators" and falls back to the eager kernel
    # (torch/_inductor/lowering.py, unsupported_input_tensor), so the casts around it stay
    # separate kernels (the mm before them is an extern kernel). Same entry both ways.
    "rope_complex": (MemOp(26.0, 26.0, 6, 6), MemOp(26.0, 26.0, 6, 6)),
    # GQA repeat_kv (expand + reshape) before SDPA, per element of the expanded K or V (all
    # query heads): forward a copy (read 2 / n_rep, write 2), backward the sum over the
    # n_rep copies (read 2, write 2 / n_rep); taken as 2 B + 2 B / n_rep ~ 2.5 B at n_rep 4-8,
    # x1.3. One kernel each for K and V.
    "repeat_kv": (MemOp(3.3, 3.3, 2, 2), MemOp(3.3, 3.3, 2, 2)),
    # The sum over TP ranks' received partial chunks of async TP's matmul-reduce-scatter
    # (stack.async_tp_reduce), per element of the full partial output: read 2 B, write
    # 2 B / TP (0.25 B at TP 8), x1.3
    "tp_chunk_sum": (MemOp(2.9, 2.9, 1, 1), MemOp(2.9, 2.9, 1, 1)),
    # A plain copy of bf16 elements (read 2, write 2), x1.3: torch.cat around DTensor's
    # sequence-dim collectives and FSDP2's all-gather copy-out (stack.py)
    "copy": (MemOp(5.2, 5.2, 1, 1), MemOp(5.2, 5.2, 1, 1)),
    # A copy from bf16 into fp32 elements (read 2, write 4), x1.3: FSDP2's reduce-scatter
    # copy-in of bf16 gradients into an fp32 reduction buffer (stack.fsdp_grad_copy_in)
    "upcast_copy": (MemOp(7.8, 7.8, 1, 1), MemOp(7.8, 7.8, 1, 1)),
    # Unpadding around a variable-length attention kernel (stack.attention_unpad; flash-attn
    # bert_padding.py@v2.4.2), per element of the tensor moved. "unpad" (each of Q, K, V):
    # IndexFirstAxis, forward torch.gather of the token rows (:17; read 2, write 2, the index
    # an expanded view, one int64 per row) and backward torch.zeros + scatter_ (:27-34; write
    # 2, read 2, write 2): 4 and 6 B minimum. "pad" (the attention output):
    # IndexPutFirstAxis, forward torch.zeros + output[indices] = values (:47-51, 6 B),
    # backward grad_output[indices] (:59, 4 B). x1.3 as the other unmeasured entries.
    "unpad": (MemOp(5.2, 7.8, 1, 2), MemOp(5.2, 7.8, 1, 2)),
    "pad": (MemOp(7.8, 5.2, 2, 1), MemOp(7.8, 5.2, 2, 1)),
    # Softmax over attention scores (unfused attention only, per score element). Fused
    # (Megatron's scale-mask-softmax, bf16 in/out): minimum 4 B fwd, 6 B bwd, x1.3.
    # Unfused (PyTorch standard attention: causal masked_fill, softmax, cast): 27.5 B fwd +
    # bwd, fitted to the FA2 paper's A100 "Pytorch" bars (causal, head dim 64/128, 512-8K:
    # 7.6% mean error with the GEMM model; tools/published/kernels/attention_fa2_paper.csv),
    # split 12 / 15.5 (the backward reads the probabilities and their gradient).
    "softmax": (MemOp(5.2, 7.8, 1, 1), MemOp(12.0, 15.5, 2, 2)),
    # Dropout on attention probabilities (GPT with unfused attention): 10.1 / 10.9 B.
    "attn_dropout": (MemOp(10.1, 10.9, 1, 1), MemOp(10.1, 10.9, 1, 1)),
    # Cross-entropy per logit. Unfused (F.cross_entropy(logits.float(), y)): 7.0 ms fwd /
    # 6.6 ms bwd for 8192 x 128,256 logits -> 28 / 26.5 B. Fused (one pass over bf16 logits,
    # as Liger's or Transformer Engine's fused cross-entropy): minimum 2 B fwd, 4 B bwd, x1.3.
    "cross_entropy": (MemOp(2.6, 5.2, 1, 1), MemOp(28.0, 26.5, 3, 3)),
    # Embedding lookup over tokens x hidden: gather (read 2, write 2) x1.3; backward
    # scatter-add into an fp32 gradient (read 2, read+write 4+4) x1.3.
    "embedding": (MemOp(5.2, 13.0, 1, 2), MemOp(5.2, 13.0, 1, 2)),
}

# Optimizer step, effective bytes per parameter held on the device, at streaming bandwidth.
# Measured (H200): fused AdamW on fp32 parameters 8.3 ns per parameter (268M and 1.07B
# parameters) -> 35 B; torch's foreach AdamW 23 ns -> 97 B; clip_grad_norm_ 4.0 ns -> 17 B.
# A mixed-precision step adds the fp32 -> bf16 copy of the parameters (read 4, write 2, x1.3
# = 8 B) and zeroing the gradients (write 4, x1.3 = 5 B).
OPTIMIZER_BYTES = {"fused": 35.0 + 17.0 + 8.0 + 5.0, "foreach": 97.0 + 17.0 + 8.0 + 5.0}
OPTIMIZER_KERNELS = {"fused": 8, "foreach": 40}  # multi-tensor launches per step (chunked)

# Effective over minimum bytes of a streaming kernel that has no measurement here: gelu's
# measured 5.2 B for 4 B of minimum traffic (MEM_OPS above), the rule of the unmeasured entries.
UNMEASURED_OVERHEAD = 1.3


@dataclass(frozen=True)
class GradPass:
    """One pass over a framework's contiguous gradient buffer, outside the backward and the
    optimizer: element reads and writes of every gradient the rank holds, one kernel per
    buffer or per data-parallel bucket."""

    reads: int
    writes: int
    per_bucket: bool


# The passes stack.grad_buffer_passes may name. Megatron-Core's DistributedDataParallel at
# core_r0.8.0 (NVIDIA/Megatron-LM@baf94af3, megatron/core/distributed/):
# - "zero": ParamAndGradBuffer.reset, `self.grad_data.zero_()` (param_and_grad_buffer.py:508),
#   through zero_grad_buffer at the start of every train_step (megatron/training/training.py:585):
#   the whole buffer, not the optimizer's shard;
# - "nan-check": Bucket.start_grad_sync, `norm = self.grad_data.norm(p=2)` and
#   `assert not norm.isnan()` (param_and_grad_buffer.py:113-114) before each bucket's
#   reduce-scatter, with check_for_nan_in_grad (Megatron-LM: args.check_for_nan_in_loss_and_grad,
#   training.py:450, on unless --no-check-for-nan-in-loss-and-grad, arguments.py:1016);
# - "scale": `self.grad_data *= self.gradient_scaling_factor` (param_and_grad_buffer.py:123),
#   1/DP unless average_in_collective (distributed_data_parallel.py:157; Megatron-LM's
#   --ddp-average-in-collective is off by default, arguments.py:1427).
GRAD_PASSES = {"zero": GradPass(0, 1, False), "nan-check": GradPass(1, 0, True), "scale": GradPass(1, 1, True)}


def mem_op(name: str, fused: bool) -> MemOp:
    return MEM_OPS[name][0 if fused else 1]


# ---------------------------------------------------------------- fused attention tables

ATTENTION_KERNELS = ("fa2", "cudnn", "fa3", "fa1", "triton", "xformers")
# The peak the tables' TFLOP/s are measured against: they are stored as fractions of it and
# applied to any device of the family (GB200 takes the Blackwell curves at its own peak).
FAMILY_PEAK = {"hopper": 989e12, "ampere": 312e12, "blackwell": 2250e12, "blackwell_ultra": 2500e12}


@dataclass(frozen=True)
class Curve:
    seq: tuple[int, ...]
    fwd: tuple[float, ...]  # fraction of the family peak
    bwd: tuple[float, ...]


@lru_cache(maxsize=1)
def _tables() -> dict[tuple[str, str, int, bool], Curve]:
    data = tomllib.loads(DATA.read_text())
    out = {}
    for family, kernels in data.items():
        peak = FAMILY_PEAK[family]
        for kernel, t in kernels.items():
            for hd in (64, 128):
                for mask, causal in (("causal", True), ("full", False)):
                    seq = t.get(f"{mask}_hd{hd}_seq")
                    if seq:
                        out[(family, kernel, hd, causal)] = Curve(
                            tuple(seq), tuple(x * 1e12 / peak for x in t[f"{mask}_hd{hd}_fwd"]),
                            tuple(x * 1e12 / peak for x in t[f"{mask}_hd{hd}_bwd"]))
    return out


def attention_kernels(family: str) -> list[str]:
    return sorted({k[1] for k in _tables() if k[0] == family})


def _interp(xs: tuple[int, ...], ys: tuple[float, ...], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    lx = math.log2(x)
    for i in range(len(xs) - 1):
        if xs[i] <= x <= xs[i + 1]:
            w = (lx - math.log2(xs[i])) / (math.log2(xs[i + 1]) - math.log2(xs[i]))
            return ys[i] + w * (ys[i + 1] - ys[i])
    return ys[-1]


@lru_cache(maxsize=4096)
def attention_efficiency(family: str, kernel: str, head_dim: int, causal: bool, seq: int, backward: bool) -> float | None:
    """Fraction of the family peak a fused-attention kernel reaches (None: no table).

    Sequence length interpolates in log2 between measured points and is held flat beyond
    them; head dimensions between 64 and 128 interpolate linearly, outside that range take
    the nearer table (FA3's paper shows head dim 256 within 10% of 128); a kernel measured
    under the other mask only takes that mask's curve."""
    tables = _tables()

    def at(hd: int) -> float | None:
        c = tables.get((family, kernel, hd, causal))
        if c is None:
            return None
        return _interp(c.seq, c.bwd if backward else c.fwd, seq)

    lo, hi = at(64), at(128)
    if lo is None and hi is None and any((family, kernel, d, not causal) in tables for d in (64, 128)):
        # a kernel measured under the other mask only (Blackwell's FA2: causal): that curve
        return attention_efficiency(family, kernel, head_dim, not causal, seq, backward)
    if lo is None or hi is None:
        return hi if lo is None else lo
    if head_dim <= 64:
        return lo
    if head_dim >= 128:
        return hi
    w = (head_dim - 64) / 64
    return lo + w * (hi - lo)


def check_attention_kernel(device_name: str, family: str, kernel: str) -> None:
    """Refuse a fused-attention kernel that has no measured curve on this GPU family."""
    if family not in FAMILY_PEAK:
        return  # TPUs and custom devices: the device's constant efficiencies apply
    available = attention_kernels(family)
    if kernel not in available:
        from simtrain.scenario.errors import bad
        raise bad("parallel.attention_kernel", kernel, f"no measured curve for {device_name}",
                  f"use one of {', '.join(available)}")
