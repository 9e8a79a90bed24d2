"""FP8 training as NVIDIA Transformer Engine runs it (`training.precision = "fp8"`).

Transformer Engine's recipe (the "hybrid" format Megatron-LM and NeMo use on Hopper:
E4M3 forward, E5M2 gradients, per-tensor delayed scaling from an amax history):
- The linear layers of every transformer layer (QKV, attention output, MLP up and down, and
  the experts of a mixture-of-experts layer) run their three GEMMs in FP8: forward
  Y = X W, input gradient dX = dY W^T, weight gradient dW = X^T dY. They are timed by the
  same tile model as bf16 GEMMs (simtrain.workload.compute) at the device's FP8 peak with
  its FP8 constants (`fp8_device`).
- Everything else stays BF16 (or FP32): attention core, norms, activations, residuals,
  embedding, the output layer and loss, the optimizer, communication.
- Cast kernels. An FP8 GEMM reads FP8 operands, and Hopper's FP8 tensor cores take only
  the "TN" layout, so the weight-gradient GEMM needs X^T and dY^T in FP8 too: TE casts
  each GEMM input activation with a fused cast-transpose (read bf16, write FP8 and its
  transpose, recording the amax on the way) in the forward, and the output gradient the
  same way in the backward. Minimum traffic 2 + 1 + 1 = 4 B per element, x1.3 (this
  project's overhead of a fused memory-bound kernel over its minimum traffic, see
  simtrain.workload.kernels) = 5.2 B. Where TE puts them (`io_casts`): the norm of a
  LayerNormLinear (QKV, MLP up) writes the FP8 input itself; with sequence parallelism the
  local shard is quantized and gathered in FP8, the gathered tensor transposed in the
  backward; Blackwell needs no transposes. (The 4-byte amax all-reduce over the TP group
  that current scaling runs before each such gather is not modelled.)
- Scaling: after each forward and each backward of a layer TE reduces the recorded amaxes
  and updates the scales in one fused multi-tensor kernel (a few KB): one kernel launch
  per layer pass.
- Weights: the FP8 copies of the weights (and their transposes, for the input-gradient
  GEMM) are cast once per step after the optimizer (TE casts on the first micro-batch and
  caches them): read the bf16 weight (2 B), write 2 x 1 B, x1.3 = 5.2 B per parameter, and
  they stay resident: +2 B per parameter of the FP8 linears.
- Activations: TE saves the FP8 (transposed) input of each linear for its weight gradient
  instead of the bf16 one: 1 B per element saved instead of 2.

Recipes (`training.fp8_recipe`; Megatron-Core's --fp8-recipe, Megatron-Bridge's fp8_ds /
fp8_cs / fp8_ss). What differs between them, from Transformer Engine's recipe documentation
(NVIDIA/TransformerEngine docs/features/low_precision_training/, @d0067d0) and its GEMM
dispatch (transformer_engine/common/gemm/cublaslt_gemm.cu):
- "delayed" (DelayedScaling, the default above): one scale per tensor from the amax history;
  the cast-transpose reads the bf16 tensor once and records the amax on the way (4 B per
  element); one amax-reduction and scale-update kernel per layer pass.
- "current" (Float8CurrentScaling, Megatron's "tensorwise"): one scale per tensor from the
  tensor's own amax: "Quantization is a memory-bound operation that requires reading the
  tensor twice: first read: compute amax ... second read: apply the scaling factor and
  cast" (fp8_current_scaling.rst): an amax kernel (read 2 B) then the cast-transpose (4 B),
  6 B per element and two kernels; no amax history, no scale-update kernel. The same
  per-tensor cuBLAS GEMMs. (The amax all-reduce over the sequence-parallel group before a
  quantized all-gather, a few bytes, is not modelled.)
- "blockwise" (Float8BlockScaling, DeepSeek-V3's scheme; Megatron "blockwise", Bridge
  "fp8_ss" / subchannel): FP32 scales per 1x128 block for activations and gradients and per
  128x128 block for weights, E4M3 everywhere. Quantization: one read; the rowwise and the
  columnwise (transposed) copies must both be quantized from the bf16 source in 1D ("both
  versions must be quantized separately from the high-precision source"), which TE's
  quantize_transpose_vector_blockwise does in one kernel: read 2 B, write 1 + 1 B, and one
  4-byte scale per 128 elements in each direction (8/128 B): 4.0625 B per element. Weights
  (2D): the same, 8/16384 B of scales. No amax history and no scale synchronization ("the
  blockwise scaled tensor does not need any scale synchronization"). GEMMs: cuBLAS 12.9's
  CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F / BLK128x128_32F modes; "On Hopper, block-scaled
  GEMMs are software-emulated" (the partial sums of each 128-deep K block are rescaled on
  the CUDA cores): slower than the per-tensor kernel at the same shape, by
  BLOCKWISE_GEMM_EFFICIENCY (derivation at the constant). Only on Hopper: on Blackwell TE
  emulates the recipe with MXFP8 (refused: ask for "mxfp8").
- "mxfp8" (MXFP8BlockScaling, Megatron "mxfp8", Bridge "fp8_mx"; Blackwell only): one E8M0
  scale (1 byte) per 32 consecutive elements along the GEMM's contraction dimension, which
  Blackwell's tensor cores apply natively. A tensor used along both dimensions (every
  activation, gradient and weight: forward and backward GEMMs contract it differently) is
  quantized rowwise and columnwise from the bf16 source in one kernel, amax per block on
  the way: read 2 B, write 1 + 1 B and 2/32 B of scales, 4.0625 B per element, on Blackwell
  too (a second scaling, not a transpose); weights keep both copies resident (2 B + scales
  per parameter). No amax history, no scale synchronization, no amax all-reduce. GEMMs at
  MXFP8_GEMM_EFFICIENCY of the per-tensor FP8 GEMM's speed (derivation at the constant).

MFU stays measured against the dense BF16 peak (the convention of the published tables
this project validates on, so FP8 and BF16 runs compare); the report also gives it against
the FP8 peak.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from simtrain.hardware.devices import Device
from simtrain.scenario.errors import bad
from simtrain.scenario.models import attention_linears, v_head_dim

CAST_TRANSPOSE_BYTES = 5.2  # per element: read bf16, write FP8 + FP8 transpose (4 B) x1.3
WEIGHT_CAST_BYTES = 5.2  # per parameter per step: the same cast-transpose of the weights
FP8_WEIGHT_BYTES = 2.0  # resident per FP8-linear parameter: the FP8 weight and its transpose (Hopper; `weight_bytes`)
FP8_GATHER_BYTES = 1.0  # training.fp8_params: an FP8 weight all-gathered over data parallelism
SCALE_KERNELS_PER_PASS = 1  # fused amax-reduction and scale update per layer forward/backward

RECIPES = ("delayed", "current", "blockwise", "mxfp8")
FUSED_OVERHEAD = 1.3  # a fused memory-bound kernel's traffic over its minimum (simtrain.workload.kernels)
BLOCK = 128  # Float8BlockScaling's block: 1 x 128 (activations, gradients), 128 x 128 (weights)
SCALE_BYTES = 4  # one FP32 scale per block
# Minimum HBM bytes per element of one quantization to FP8 with both usages (rowwise and the
# transposed columnwise copy), by recipe (module docstring): activations / gradients ...
MX_BLOCK = 32  # MXFP8: one E8M0 scale (1 byte) per 32 elements along the contraction dimension
QUANT_MIN_BYTES = {"delayed": 2 + 1 + 1, "current": 2 + 2 + 1 + 1, "blockwise": 2 + 1 + 1 + 2 * SCALE_BYTES / BLOCK,
                   "mxfp8": 2 + 1 + 1 + 2 / MX_BLOCK}
# ... and weights (128 x 128 blocks for blockwise; MXFP8's weights are 1 x 32 blocks too)
WEIGHT_QUANT_MIN_BYTES = {"delayed": 2 + 1 + 1, "current": 2 + 2 + 1 + 1,
                          "blockwise": 2 + 1 + 1 + 2 * SCALE_BYTES / BLOCK ** 2, "mxfp8": 2 + 1 + 1 + 2 / MX_BLOCK}
QUANT_KERNELS = {"delayed": 1, "current": 2, "blockwise": 1, "mxfp8": 1}  # current: the amax kernel, then the cast
SCALE_KERNELS = {"delayed": SCALE_KERNELS_PER_PASS, "current": 0, "blockwise": 0, "mxfp8": 0}  # per layer pass
# recipes that quantize both usages of a tensor from its source (two scalings, not a
# transpose): Blackwell writes both too, and keeps both copies of a weight
BOTH_USAGES = ("blockwise", "mxfp8")
# Blockwise FP8 GEMM throughput on Hopper as a fraction of the per-tensor FP8 GEMM's at the
# same shape. Source: Transformer Engine's GEMM profiling tutorial (NVIDIA/TransformerEngine
# docs/examples/gemm_profiling/gemm_profiling.rst, commit 1609c890e, 2026-06-01; benchmarks/
# gemm/benchmark_gemm.py), H200 NVL, the 12 GEMMs of one layer of a 5B model (M 15,872
# tokens, hidden 4,096, FFN 16,384), each a te.Linear forward under autocast, per layer:
# BF16 32.014 ms, FP8 DelayedScaling 18.978, FP8 Block 22.882; pre-quantized (GEMM kernels
# only) per-tensor FP8 16.785 (blockwise was not pre-quantizable there). Delayed's autocast
# time over the pre-quantized kernels, 18.978 - 16.785 = 2.193 ms, is its quantization of
# each call's two inputs (4 B per element, the same bytes as blockwise's 4.06): the
# blockwise GEMMs took 22.882 - 2.193 x 4.0625/4 = 20.655 ms against 16.785:
# 16.785 / 20.655 = 0.81. (Consistent with the other published numbers: DeepSeek's
# DeepGEMM, 1D x 2D blockwise on H800, reports 1.1-1.3x over "our internally and carefully
# optimized implementation based on CUTLASS 3.6" at M = 4,096, README @55ab91f, i.e. the
# CUTLASS kernel at 0.77-0.91 of DeepGEMM's 1,009-1,426 TFLOP/s.) The benchmark's GEMMs are
# all 1D x 2D (activation x weight: forward and input gradient); the weight gradient is
# 1D x 1D (x^T dY, both 1 x 128), for which TE says "GEMMs with mixed 1D/2D scaled tensors
# have lower overhead than pure 1D scaled GEMMs" without a number: the same factor is used
# (optimistic for the weight gradient).
BLOCKWISE_GEMM_EFFICIENCY = 0.81
# MXFP8 GEMM throughput on Blackwell as a fraction of the per-tensor FP8 GEMM's at the same
# shape. Source: the same Transformer Engine tutorial's B300 SXM6 AC run (docs/examples/
# gemm_profiling/gemm_profiling.rst @d0067d0da, the 5B layer above), with --pre-quantize
# (GEMM kernels only): per-layer GEMM time FP8Current 6.812 ms, MXFP8 7.161 ms:
# 6.812 / 7.161 = 0.951. (Its autocast run, quantization included: 9.147 and 8.984 ms;
# tests/test_fp8.py checks that this constant and the quantization bytes above give that
# ratio.) Measured on B300, used for every Blackwell part (the same tensor cores).
MXFP8_GEMM_EFFICIENCY = 0.951
GEMM_EFFICIENCY = {"delayed": 1.0, "current": 1.0, "blockwise": BLOCKWISE_GEMM_EFFICIENCY,
                   "mxfp8": MXFP8_GEMM_EFFICIENCY}
HOPPER = ("H100", "H200", "H800")  # devices where TE runs Float8BlockScaling natively (SM 9.0)
BLACKWELL = ("B200", "GB200", "B300", "GB300")  # devices with MXFP8 tensor cores (SM 10.x)


def is_fp8(precision: str) -> bool:
    """`precision` as the workload functions see it: "fp8" (delayed scaling) or "fp8-<recipe>"
    (workload_precision)."""
    return precision == "fp8" or precision.startswith("fp8-")


def workload_precision(precision: str, fp8_recipe: str = "delayed") -> str:
    """training.precision with training.fp8_recipe folded in, for the workload functions:
    "fp8" for delayed scaling (as before recipes), "fp8-current", "fp8-blockwise"."""
    if precision != "fp8" or fp8_recipe == "delayed":
        return precision
    return f"fp8-{fp8_recipe}"


def recipe_of(precision: str) -> str:
    """The FP8 recipe of a workload precision ("fp8" -> "delayed")."""
    return precision[4:] if precision.startswith("fp8-") else "delayed"


def check_fp8(dev: Device, precision: str, fp8_recipe: str = "delayed", fp8_params: bool = False,
              moe: bool = False) -> None:
    """One line when FP8 is asked of a device without FP8 tensor cores, or a recipe where
    Transformer Engine does not run it, or a recipe (or FP8 weights) without FP8."""
    if fp8_params and not is_fp8(precision):
        raise bad("training.fp8_params", True, f"keeps the weights in FP8, but training.precision is {precision!r}",
                  'set training.precision = "fp8", or remove training.fp8_params')
    if fp8_params and moe:
        raise bad("training.fp8_params", True, "is modelled for dense models only", "remove training.fp8_params")
    if is_fp8(precision) and dev.peak_fp8_flops <= 0:
        raise bad("training.precision", precision, f"device {dev.name} has no FP8 throughput in its device file "
                  "(no FP8 tensor cores, or none measured: peak_fp8_tflops, gemm_fp8_max_efficiency)",
                  'use training.precision = "bf16", an H100, H200 or B200 (cluster.device), or add the FP8 keys '
                  "to a copy of the device file")
    if fp8_recipe not in RECIPES:  # (the scenario loader refuses it first; megatron_args and [device] paths)
        raise bad("training.fp8_recipe", fp8_recipe, "is not an FP8 recipe simtrain models",
                  f"use one of {', '.join(RECIPES)}")
    if fp8_recipe != "delayed" and not is_fp8(precision):
        raise bad("training.fp8_recipe", fp8_recipe, f"applies to FP8 training, but training.precision is {precision!r}",
                  'set training.precision = "fp8", or remove training.fp8_recipe (from the command line, '
                  '--set training.fp8_recipe=delayed: the default, which BF16 training ignores)')
    if fp8_recipe == "blockwise" and not dev.name.startswith(HOPPER):
        raise bad("training.fp8_recipe", fp8_recipe, f"Transformer Engine runs Float8BlockScaling natively only on "
                  f"Hopper (on Blackwell it is emulated with MXFP8), not on {dev.name}",
                  'use training.fp8_recipe = "mxfp8", "current" or "delayed", or an H100, H200 or H800 (cluster.device)')
    if fp8_recipe == "mxfp8" and not dev.name.startswith(BLACKWELL):
        raise bad("training.fp8_recipe", fp8_recipe, f"MXFP8 block scaling needs Blackwell tensor cores (B200, GB200, B300, GB300), "
                  f"not {dev.name}", 'use training.fp8_recipe = "blockwise", "current" or "delayed" on Hopper, '
                  "or a Blackwell GPU: B200, GB200, B300 or GB300 (cluster.device)")


@lru_cache(maxsize=64)
def fp8_device(dev: Device, recipe: str = "delayed") -> Device:
    """The device as its FP8 GEMMs see it: FP8 peak, FP8 efficiency (x the recipe's GEMM
    efficiency: blockwise's emulated scaling on Hopper), K_half doubled (the K loop runs
    twice the MACs per cycle; see simtrain.hardware.devices)."""
    eff = dev.gemm_fp8_max_efficiency * GEMM_EFFICIENCY[recipe]
    return dataclasses.replace(dev, peak_flops=dev.peak_fp8_flops, gemm_max_efficiency=eff,
                               gemm_k_half=2 * dev.gemm_k_half)


def cast_bytes(recipe: str = "delayed") -> float:
    """Effective HBM bytes per element of one quantization of an activation or gradient, with
    its transposed copy (a TN-only device: Hopper)."""
    return QUANT_MIN_BYTES[recipe] * FUSED_OVERHEAD


def cast_seconds(dev: Device, elements: float, recipe: str = "delayed") -> float:
    """GPU seconds of quantizing `elements` (bf16 in, FP8 and, on Hopper, FP8^T out) under
    `recipe` (Blackwell writes no transpose: `tn_only`)."""
    if elements <= 0:
        return 0.0
    return _pass(dev, _no_transpose(dev, recipe, QUANT_MIN_BYTES[recipe]) * elements, QUANT_KERNELS[recipe])


def _pass(dev: Device, min_bytes: float, kernels: int) -> float:
    """GPU seconds of a fused memory-bound pass moving `min_bytes` (x FUSED_OVERHEAD) in
    `kernels` launches."""
    return min_bytes * FUSED_OVERHEAD / (dev.hbm_bytes_per_s * dev.memory_efficiency) + kernels * dev.kernel_overhead_s


def weight_bytes(dev: Device, recipe: str = "delayed") -> float:
    """Resident bytes per FP8-linear parameter: the FP8 weight and, on Hopper, its transpose
    for the input-gradient GEMM; Blackwell keeps no transpose (`tn_only`); MXFP8 keeps both
    scalings of the weight and their scales."""
    if recipe == "mxfp8":
        return FP8_WEIGHT_BYTES + 2 / MX_BLOCK
    return FP8_WEIGHT_BYTES if tn_only(dev) else FP8_WEIGHT_BYTES - TRANSPOSE_IN_CAST


def _no_transpose(dev: Device, recipe: str, nbytes: float) -> float:
    """A per-tensor quantization's minimum bytes without the transposed copy on non-TN devices."""
    return nbytes if recipe in BOTH_USAGES or tn_only(dev) else nbytes - TRANSPOSE_IN_CAST


# Where Transformer Engine quantizes a linear's input and output gradient under the per-tensor
# recipes (TE v2.9 @70f5366; v2.8-2.11 the same): with sequence parallelism the local shard is
# quantized and the all-gather moves FP8 ("supports_only_rowwise_all_gather",
# tensor/float8_tensor.py:195-199, 396-400; distributed.py _all_gather_fp8); LayerNormLinear
# (QKV, MLP up) quantizes in the norm kernel (layernorm_linear.py:197-219,
# csrc/extensions/normalization.cpp:97-147: delayed writes FP8 directly, FULLY_FUSED;
# current computes norm and amax in one kernel, then casts, FUSED_NORM_AMAX_FP8); and the
# transposed copy the weight-gradient GEMM needs on Hopper (TN-only FP8 GEMMs) is a separate
# transpose of the gathered tensor in the backward (layernorm_linear.py:650-674, 809-811;
# float8_tensor_storage.py _create_transpose), or fused into the cast of a local tensor
# (cast_kernels.cuh cast_transpose). Blackwell runs non-TN FP8 GEMMs
# (is_non_tn_fp8_gemm_supported, SM 10.0+): no transposes. Minimum bytes per element:
CAST_ROW = 2 + 1  # read bf16, write FP8
TRANSPOSE_IN_CAST = 1  # the transposed FP8 written by the same kernel
TRANSPOSE_ALONE = 1 + 1  # read FP8, write its transpose


def tn_only(dev: Device) -> bool:
    """FP8 GEMMs take only the TN layout (Hopper), so every FP8 operand of a weight-gradient
    GEMM needs a transposed copy; Blackwell's do not (TE is_non_tn_fp8_gemm_supported)."""
    return dev.name.startswith(HOPPER)


def io_casts(dev: Device, recipe: str, m: int, n: int, k: int, gather_in: int = 1, normed: bool = False,
             gather_dy: int = 1) -> list[tuple[str, float, int, float, bool]]:
    """(phase, seconds, kernels, bytes, of X) of quantizing one FP8 linear's input X[m, k] (forward)
    and output gradient dY[m, n] (backward) where Transformer Engine does it (comment above).
    `gather_in`: X is all-gathered over that many sequence-parallel ranks (QKV, MLP up with
    SP), `normed`: X comes out of the norm of a LayerNormLinear, `gather_dy`: dY is gathered
    (output projection, MLP down with SP). Blockwise keeps one quantize-transpose per tensor,
    MXFP8 one quantization of both usages per local shard."""
    def run(nbytes: float, kernels: int, of_x: bool) -> tuple[float, int, float, bool]:
        return _pass(dev, nbytes, kernels), kernels, nbytes * FUSED_OVERHEAD, of_x

    if recipe == "blockwise":
        return [("fwd", *run(QUANT_MIN_BYTES[recipe] * m * k, 1, True)),
                ("bwd", *run(QUANT_MIN_BYTES[recipe] * m * n, 1, False))]
    if recipe == "mxfp8":  # both usages of the local shard, gathered quantized (mxfp8.rst, "All-gather of
        # columnwise tensors": "gathering high-precision tensors is avoided")
        return [("fwd", *run(QUANT_MIN_BYTES[recipe] * m * k / gather_in, 1, True)),
                ("bwd", *run(QUANT_MIN_BYTES[recipe] * m * n / gather_dy, 1, False))]
    tn = tn_only(dev)
    amax = 2 if recipe == "current" else 0  # current scaling reads a tensor once more for its amax
    extra = QUANT_KERNELS[recipe] - 1
    out = []
    # forward: X, quantized on its local shard (m / gather_in rows)
    local = m * k / gather_in
    if normed and recipe == "delayed":
        fwd = (0.0, 0)  # the norm kernel writes FP8 itself
        if tn and gather_in == 1:  # ... then TE transposes it (ln_api.cpp: nvte_transpose)
            fwd = (TRANSPOSE_ALONE * local, 1)
    else:
        row = CAST_ROW + (0 if normed else amax) + (TRANSPOSE_IN_CAST if tn and gather_in == 1 else 0)
        fwd = (row * local, 1 + (0 if normed else extra))
    out.append(("fwd", *run(*fwd, True)))
    if tn and gather_in > 1:  # the gathered X transposed for the weight gradient, in the backward
        out.append(("bwd", *run(TRANSPOSE_ALONE * m * k, 1, True)))
    # backward: dY, quantized on its local shard, transposed after the gather on Hopper
    row = CAST_ROW + amax + (TRANSPOSE_IN_CAST if tn and gather_dy == 1 else 0)
    out.append(("bwd", *run(row * m * n / gather_dy, 1 + extra, False)))
    if tn and gather_dy > 1:
        out.append(("bwd", *run(TRANSPOSE_ALONE * m * n, 1, False)))
    return [o for o in out if o[2] > 0]


def weight_cast_seconds(dev: Device, params: float, recipe: str = "delayed") -> float:
    """Per step: the FP8 copies (and, on Hopper, transposes) of `params` weights, once after
    the optimizer."""
    if params <= 0:
        return 0.0
    return _pass(dev, _no_transpose(dev, recipe, WEIGHT_QUANT_MIN_BYTES[recipe]) * params, QUANT_KERNELS[recipe])


def scale_update_seconds(dev: Device, recipe: str = "delayed") -> float:
    """The fused amax-reduction and scale-update kernel of one layer pass (launch-bound);
    delayed scaling only."""
    return SCALE_KERNELS[recipe] * dev.kernel_overhead_s


def linear_params_per_layer(model) -> float:
    """Weights of one layer's FP8 linears (QKV, output projection, MLP up and down), all TP
    ranks together: every matmul weight of the layer (norm weights and biases stay bf16)."""
    h = model.hidden_size
    up = (2 if model.mlp == "gated" else 1) * model.intermediate_size
    return float(sum(i * o for _, i, o, _ in attention_linears(model)) + h * up + model.intermediate_size * h)


def activation_saving_bytes(model, seq_len: int, micro_batch: int, tp: int, sequence_parallel: bool,
                            recompute: str, cp: int = 1, modules: frozenset[str] = frozenset()) -> float:
    """Bytes per layer and micro-batch that FP8 saves on one rank: the input of each linear
    kept for its weight gradient in FP8 (1 B) instead of bf16 (2 B) (simtrain.workload.memory
    counts them at 2 B: the QKV and MLP-up inputs h each, /tp with sequence parallelism, the
    output-projection input q/tp and the MLP-down input f/tp). Full recomputation keeps only
    the layer input: nothing to save."""
    if recompute in ("full", "op-selective"):  # op-selective: counted at its own saved tensors, none FP8
        return 0.0
    t = max(1, tp)
    sp = sequence_parallel and t > 1
    # q: the output projection's input width (MLA: heads x v_head_dim)
    h, q, f = model.hidden_size, model.num_attention_heads * v_head_dim(model), model.intermediate_size
    tokens = micro_batch * seq_len / cp
    # selective modules that do not keep a linear's input leave nothing to save on it:
    # layernorm (the QKV and MLP-up inputs), mlp (the MLP-down input)
    normed = 0 if "layernorm" in modules else 2 * h / (t if sp else 1)
    down = 0 if "mlp" in modules else f / t
    return tokens * (normed + q / t + down)


def param_gather_bytes(model, params: float, layers: int, tp: int, fp8_params: bool, recipe: str = "delayed") -> float:
    """Bytes per parameter the distributed optimizer all-gathers for `params` parameters of
    `layers` transformer layers on one TP rank: bf16 (2), or with training.fp8_params the
    linear weights in FP8 (1) and the rest (norms, biases, embeddings) in bf16. MXFP8 gathers
    both scalings and their scales ("columnwise quantized tensors cannot be computed from
    rowwise quantized ones", Transformer Engine's mxfp8.rst, "All-gather of columnwise
    tensors"): 2 + 2/32."""
    if not fp8_params or params <= 0:
        return 2.0
    linear = min(params, layers * linear_params_per_layer(model) / max(1, tp))
    per = 2 + 2 / MX_BLOCK if recipe == "mxfp8" else FP8_GATHER_BYTES
    return (per * linear + 2.0 * (params - linear)) / params
