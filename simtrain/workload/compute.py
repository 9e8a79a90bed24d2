"""Compute-time model: how long one operation takes on one device.

- GEMM: time = FLOPs / (peak * efficiency), efficiency = max_eff * wave * depth * tile,
  where `wave` is tile quantization over the SMs (tiles / (waves * SMs)), `depth` = K/(K+K_half)
  accounts for the pipeline prologue/epilogue of a K loop, and the tile menu is searched the
  way a cuBLAS heuristic would. Bounded below by the memory roofline (operands / HBM BW).
  A large square GEMM reaches ~80% of peak on H100 (798 TFLOP/s measured on 8192^3); small
  or skinny GEMMs much less.
- Attention (FlashAttention): FLOPs / (peak * fwd or bwd efficiency); causal masks skip half.
- Everything else (norms, activations, residuals, RoPE, softmax, optimizer): memory-bound
  roofline, bytes / (HBM bandwidth * memory_efficiency).
Each kernel also pays `kernel_overhead_s`.
"""

from __future__ import annotations

import math
from functools import lru_cache

from simtrain.hardware.devices import Device


@lru_cache(maxsize=65536)
def gemm_efficiency(dev: Device, m: int, n: int, k: int, batch: int = 1) -> float:
    """Fraction of peak a bf16 GEMM (m x k) @ (k x n), `batch` times, reaches (compute side)."""
    best = 0.0
    for tm, tn, rel in dev.gemm_tiles:
        tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
        waves = math.ceil(tiles / dev.sms)
        wave_util = tiles / (waves * dev.sms)
        # partial tiles at the edges compute padding: useful fraction of the tile work
        edge_util = (m * n) / (math.ceil(m / tm) * tm * math.ceil(n / tn) * tn)
        best = max(best, rel * wave_util * edge_util)
    depth = k / (k + dev.gemm_k_half)
    return dev.gemm_max_efficiency * best * depth


def gemm_time(dev: Device, m: int, n: int, k: int, batch: int = 1, elem_bytes: int = 2) -> float:
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    flops = 2.0 * m * n * k * batch
    t_compute = flops / (dev.peak_flops * dev.sustained_fraction * gemm_efficiency(dev, m, n, k, batch))
    t_memory = elem_bytes * batch * (m * k + k * n + m * n) / (dev.hbm_bytes_per_s * dev.memory_efficiency)
    return max(t_compute, t_memory) + dev.kernel_overhead_s


def gemm_flops(m: int, n: int, k: int, batch: int = 1) -> float:
    return 2.0 * m * n * k * batch


def memory_time(dev: Device, nbytes: float, kernels: int = 1) -> float:
    """Streaming kernels bound by HBM bandwidth."""
    return nbytes / (dev.hbm_bytes_per_s * dev.memory_efficiency) + kernels * dev.kernel_overhead_s


def attention_time(dev: Device, flops: float, backward: bool) -> float:
    eff = dev.attention_bwd_efficiency if backward else dev.attention_fwd_efficiency
    return flops / (dev.peak_flops * dev.sustained_fraction * eff) + dev.kernel_overhead_s
