"""Accelerator catalog: peak dense BF16 FLOP/s, HBM bandwidth and capacity, and the
kernel-efficiency constants of the compute model (simtrain.workload.compute). All
physical quantities; each carries its source.

GEMM efficiency: the best large bf16 GEMM reaches `gemm_max_efficiency` of peak before
tile-quantization and pipeline-depth losses (simtrain.workload.compute). It is set so
that the model reproduces the maximum achievable matmul FLOP/s measured for 8192^3 bf16:
- H100 SXM: 798 TFLOP/s measured on this project's lent H100 (8192x8192x8192 bf16,
  device tool notes, 2026-11-13); Bekman's ml-engineering MAMF table gives 792 (80.1%).
- A100 SXM: 267.9 TFLOP/s (85.9% of 312), ml-engineering "Maximum Achievable Matmul
  FLOPS" table (Bekman, github.com/stas00/ml-engineering, compute/accelerator).
- H200: 788 TFLOP/s measured on this project's lent H200 (device tool notes, 2026-10-28).

Attention efficiencies are FlashAttention-2's, the kernel generation the calibration runs
used: on A100 the FA2 paper (Dao 2023) reports up to 73% of peak forward and ~63%
forward+backward; on H100 the FA3 paper (Shah et al. 2024, Fig. 5-6, head dim 128, long
sequences) measures FA2 at ~350 TFLOP/s forward and ~300 backward (35% / 30% of peak).
FA3 roughly doubles that on Hopper; set a device's efficiencies for a what-if.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simtrain.scenario.errors import SimtrainError


@dataclass(frozen=True)
class Device:
    name: str
    peak_flops: float  # dense BF16 FLOP/s
    hbm_bytes_per_s: float
    memory_bytes: float
    sms: int  # streaming multiprocessors (or matrix units) that GEMM tiles are spread over
    gemm_tiles: tuple[tuple[int, int, float], ...]  # (tile_m, tile_n, relative efficiency)
    gemm_max_efficiency: float  # fraction of peak of a large GEMM with full waves
    gemm_k_half: int  # K at which pipeline prologue/epilogue halve efficiency (see compute)
    attention_fwd_efficiency: float  # FlashAttention forward, fraction of peak
    attention_bwd_efficiency: float  # FlashAttention backward, fraction of peak
    memory_efficiency: float  # achievable fraction of HBM bandwidth for streaming kernels
    kernel_overhead_s: float  # fixed cost per kernel (launch + tail), seconds
    # Share of the benchmark tensor throughput sustained inside a full training step
    # (power- and thermally-limited clocks with HBM, NVLink and NICs busy at once, SMs
    # shared with communication kernels). 1.0 = as benchmarked in isolation.
    sustained_fraction: float = 1.0


# Tile menus: CUTLASS/cuBLAS Hopper kernels use 128x256 and 256x128 warp-specialized tiles,
# smaller tiles lose operand reuse (relative efficiencies are estimates from CUTLASS
# profiler sweeps; they only matter when they win on wave quantization).
_HOPPER_TILES = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.93), (64, 128, 0.80))
_AMPERE_TILES = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.95), (64, 128, 0.82))
_TPU_TILES = ((128, 128, 1.0),)  # 128x128 MXU

CATALOG: dict[str, Device] = {
    # NVIDIA A100 Tensor Core GPU datasheet: 312 TFLOP/s dense BF16; 40GB HBM2 1,555 GB/s;
    # 80GB HBM2e 2,039 GB/s; 108 SMs (A100 whitepaper).
    # sustained_fraction 0.90: fitted to Megatron-LM SC21 Table 1 (10 runs, 1.7B-1T on
    # Selene), the A100 counterpart of the H100 constant below: 0.90 x 268 = 241 TFLOP/s of
    # sustained large-GEMM throughput in training (400 W cap; 2021 cuBLAS).
    "A100-40GB": Device("A100-40GB", 312e12, 1555e9, 40 * 2**30, 108, _AMPERE_TILES, 0.8747, 128, 0.70, 0.63, 0.85, 4e-6, 0.90),
    "A100-80GB": Device("A100-80GB", 312e12, 2039e9, 80 * 2**30, 108, _AMPERE_TILES, 0.8747, 128, 0.70, 0.63, 0.85, 4e-6, 0.90),
    # NVIDIA H100 datasheet (SXM5): 989 TFLOP/s dense BF16 (1,979 with sparsity), HBM3
    # 3.35 TB/s, 80 GB (nvidia-smi shows 81,559 MiB on the lent H100, device tool notes); 132 SMs.
# A device-to-device copy reached ~3.0 TB/s there (0.9 of the datasheet rate).
    # sustained_fraction 0.68: the one constant calibrated on a training run, Llama 3 Table 4
    # row 1 (43% MFU on 8,192 H100s, llama3 schedule with 8 virtual stages); rows 2 and 3
    # and every other H100 figure are then predictions. 0.68 x 798/989 = 55% of peak as
    # sustained large-GEMM throughput inside training (700 W power cap and shared SMs).
    "H100-SXM": Device("H100-SXM", 989e12, 3.35e12, 81559 * 2**20, 132, _HOPPER_TILES, 0.8475, 128, 0.35, 0.30, 0.85, 4e-6, 0.68),
    # NVIDIA H200 datasheet: same compute as H100 SXM, HBM3e 4.8 TB/s, 141 GB (nvidia-smi: 143,771 MiB).
    # same GH100 die and 700 W limit as H100 SXM: same sustained fraction (assumed)
    "H200": Device("H200", 989e12, 4.8e12, 143771 * 2**20, 132, _HOPPER_TILES, 0.8369, 128, 0.35, 0.30, 0.85, 4e-6, 0.68),
    # NVIDIA DGX/HGX B200 datasheet: 2.25 PFLOP/s dense BF16 per GPU, HBM3e 8 TB/s, 180 GB;
    # 148 SMs. GEMM efficiency assumed as for Hopper (no measurement available here).
    # sustained fraction assumed equal to Hopper's (no public training measurement here)
    "B200": Device("B200", 2.25e15, 8e12, 180e9, 148, _HOPPER_TILES, 0.80, 128, 0.35, 0.30, 0.85, 4e-6, 0.68),
    # Google Cloud TPU v4 docs: 275 TFLOP/s BF16, 32 GiB HBM2 at 1,200 GB/s; 2 TensorCores x
    # 4 MXUs of 128x128. Efficiencies assumed (no public MAMF measurement).
    "TPU-v4": Device("TPU-v4", 275e12, 1.2e12, 32 * 2**30, 8, _TPU_TILES, 0.85, 256, 0.55, 0.45, 0.85, 2e-6),
    # Google Cloud TPU v5p docs: 459 TFLOP/s BF16, 95 GiB HBM2e at 2,765 GB/s; 4 MXUs per
    # TensorCore, 2 TensorCores.
    "TPU-v5p": Device("TPU-v5p", 459e12, 2.765e12, 95 * 2**30, 8, _TPU_TILES, 0.85, 256, 0.55, 0.45, 0.85, 2e-6),
}

ALIASES = {"H100": "H100-SXM", "A100": "A100-80GB", "TPUv4": "TPU-v4", "TPUv5p": "TPU-v5p", "v5p": "TPU-v5p", "v4": "TPU-v4"}


# Fused-attention kernel generations: (forward, backward) fraction of peak at long sequences,
# head dim 128, isolated. Hopper: FA3 paper (Shah et al. 2024, Fig. 5/6, H100 SXM5):
# FlashAttention-2 ~370 TFLOP/s forward / ~300 backward, cuDNN 9 ~600 / ~470, FlashAttention-3
# ~650 / ~540 (of 989). Ampere: FA2 paper (Dao 2023): up to 73% forward, ~63% fwd+bwd; cuDNN's
# fused attention is on par there and FA3 does not exist (it needs Hopper's wgmma/TMA).
ATTENTION_KERNELS: dict[str, dict[str, tuple[float, float]]] = {
    "hopper": {"fa2": (0.35, 0.30), "cudnn": (0.60, 0.47), "fa3": (0.65, 0.54)},
    "ampere": {"fa2": (0.70, 0.63), "cudnn": (0.70, 0.63)},
    "tpu": {"fa2": (0.55, 0.45), "cudnn": (0.55, 0.45)},  # Pallas flash attention, assumed
}
FAMILY = {"A100-40GB": "ampere", "A100-80GB": "ampere", "H100-SXM": "hopper", "H200": "hopper", "B200": "hopper",
          "TPU-v4": "tpu", "TPU-v5p": "tpu"}


def with_attention_kernel(dev: Device, kernel: str) -> Device:
    """The device with the attention efficiencies of a kernel generation (scenario
    key parallel.attention_kernel); the catalog entries carry FlashAttention-2's."""
    table = ATTENTION_KERNELS[FAMILY.get(dev.name, "hopper")]
    if kernel not in table:
        raise SimtrainError(
            f"parallel.attention_kernel = {kernel!r}: not available on {dev.name}; use one of {', '.join(table)}")
    fwd, bwd = table[kernel]
    return dataclasses.replace(dev, attention_fwd_efficiency=fwd, attention_bwd_efficiency=bwd)


def get_device(name: str, field: str = "cluster.device") -> Device:
    key = ALIASES.get(name, name)
    if key not in CATALOG:
        raise SimtrainError(f"{field} = {name!r}: unknown device; use one of {', '.join(CATALOG)}")
    return CATALOG[key]


def scaled(dev: Device, **changes: float) -> Device:
    """A what-if copy of a device (e.g. a slower straggler)."""
    return dataclasses.replace(dev, **changes)
