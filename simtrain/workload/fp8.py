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
  simtrain.workload.kernels) = 5.2 B. Fusing the cast into a preceding norm or activation
  (LayerNormLinear, LayerNormMLP) saves part of it; not modelled (slightly pessimistic).
- Scaling: after each forward and each backward of a layer TE reduces the recorded amaxes
  and updates the scales in one fused multi-tensor kernel (a few KB): one kernel launch
  per layer pass.
- Weights: the FP8 copies of the weights (and their transposes, for the input-gradient
  GEMM) are cast once per step after the optimizer (TE casts on the first micro-batch and
  caches them): read the bf16 weight (2 B), write 2 x 1 B, x1.3 = 5.2 B per parameter, and
  they stay resident: +2 B per parameter of the FP8 linears.
- Activations: TE saves the FP8 (transposed) input of each linear for its weight gradient
  instead of the bf16 one: 1 B per element saved instead of 2.

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
FP8_WEIGHT_BYTES = 2.0  # resident per FP8-linear parameter: the FP8 weight and its transpose
SCALE_KERNELS_PER_PASS = 1  # fused amax-reduction and scale update per layer forward/backward


def is_fp8(precision: str) -> bool:
    return precision == "fp8"


def check_fp8(dev: Device, precision: str) -> None:
    """One line when FP8 is asked of a device without FP8 tensor cores."""
    if is_fp8(precision) and dev.peak_fp8_flops <= 0:
        raise bad("training.precision", precision, f"device {dev.name} has no FP8 tensor cores",
                  'use training.precision = "bf16", or an H100, H200 or B200 (cluster.device)')


@lru_cache(maxsize=64)
def fp8_device(dev: Device) -> Device:
    """The device as its FP8 GEMMs see it: FP8 peak, FP8 efficiency, K_half doubled (the
    K loop runs twice the MACs per cycle; see simtrain.hardware.devices)."""
    return dataclasses.replace(dev, peak_flops=dev.peak_fp8_flops, gemm_max_efficiency=dev.gemm_fp8_max_efficiency,
                               gemm_k_half=2 * dev.gemm_k_half)


def cast_seconds(dev: Device, elements: float) -> float:
    """GPU seconds of one fused cast-transpose over `elements` (bf16 in, FP8 and FP8^T out)."""
    if elements <= 0:
        return 0.0
    return CAST_TRANSPOSE_BYTES * elements / (dev.hbm_bytes_per_s * dev.memory_efficiency) + dev.kernel_overhead_s


def weight_cast_seconds(dev: Device, params: float) -> float:
    """Per step: the FP8 copies (and transposes) of `params` weights, once after the optimizer."""
    if params <= 0:
        return 0.0
    return WEIGHT_CAST_BYTES * params / (dev.hbm_bytes_per_s * dev.memory_efficiency) + dev.kernel_overhead_s


def scale_update_seconds(dev: Device) -> float:
    """The fused amax-reduction and scale-update kernel of one layer pass (launch-bound)."""
    return SCALE_KERNELS_PER_PASS * dev.kernel_overhead_s


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
