"""Compute-time model: how long one kernel takes on one device (GPU time).

- GEMM: time = FLOPs / (peak * sustained * efficiency), efficiency = max_eff * wave * edge *
  depth: `wave` is tile quantization over the SMs (tiles / (waves * SMs)), `edge` the padding
  of partial tiles, `depth` = K/(K+K_half) the prologue/epilogue of the K loop, and the tile
  menu is searched as a cuBLAS heuristic would. Fitted on 328 aligned bf16 GEMMs measured on
  an H200 (tools/kernels/; transformer shapes at TP 1-8 and random shapes, 50 us and up):
  6% mean absolute error. A GEMM with a dimension that is not a multiple of 8 elements
  cannot use the aligned (TMA, vectorised) kernels: `gemm_misaligned_factor` of the aligned
  rate (measured 100-140 against ~700 TFLOP/s). Bounded below by the memory roofline.
- Fused attention: FLOPs / (peak * sustained * efficiency(kernel, sequence, head dim, mask)),
  the measured curves of simtrain.workload.kernels, with wave quantization when a micro-
  batch's (batch x heads x query blocks) fill less than a few waves of SMs.
- Memory-bound operators: effective bytes / streaming bandwidth (simtrain.workload.kernels).
Each kernel also pays the device's `kernel_overhead_s` of GPU time (launch latency and tail).
"""

from __future__ import annotations

import math
from functools import lru_cache

from simtrain.hardware.devices import FAMILY, Device
from simtrain.workload.kernels import attention_efficiency, mem_op


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
    eff = dev.gemm_max_efficiency * best * depth
    if m % 8 or n % 8 or k % 8:
        eff *= dev.gemm_misaligned_factor
    return eff


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


def op_time(dev: Device, name: str, fused: bool, elements: float, backward: bool) -> tuple[float, int]:
    """GPU seconds and kernel launches of one memory-bound operator over `elements`."""
    if elements <= 0:
        return 0.0, 0
    op = mem_op(name, fused)
    nbytes, kernels = (op.bwd_bytes, op.bwd_kernels) if backward else (op.fwd_bytes, op.fwd_kernels)
    return memory_time(dev, nbytes * elements, kernels), kernels


def attention_time(dev: Device, flops: float, backward: bool, kernel: str = "", seq: int = 0, head_dim: int = 128,
                   causal: bool = True, blocks: int = 0) -> float:
    """Seconds of a fused-attention call executing `flops` (causal halving already applied).

    With a kernel and sequence length, the efficiency is the measured curve for the
    device's family; otherwise (or where the family has no table, e.g. TPUs) the device's
    constant `attention_fwd/bwd_efficiency`. `blocks` = batch x heads x ceil(seq/128), the
    kernel's thread blocks (one 128-query tile each): fewer than four waves of SMs lose the
    idle SMs of the last wave, which the benchmarks (16k tokens, 16-32 heads) never do."""
    eff = None
    if kernel and seq:
        family = FAMILY.get(dev.name, "")
        eff = attention_efficiency(family, kernel, head_dim, causal, seq, backward)
    if eff is None:
        eff = dev.attention_bwd_efficiency if backward else dev.attention_fwd_efficiency
    if 0 < blocks < 4 * dev.sms:
        waves = math.ceil(blocks / dev.sms)
        eff *= blocks / (waves * dev.sms)
    return flops / (dev.peak_flops * dev.sustained_fraction * eff) + dev.kernel_overhead_s
