"""Accelerator catalog: peak dense BF16 FLOP/s, HBM bandwidth and capacity, and the
kernel-efficiency constants of the compute model (simtrain.workload.compute). All
physical quantities; each carries its source.

GEMM efficiency (simtrain.workload.compute): `gemm_max_efficiency` and `gemm_k_half` are
fitted on 328 aligned bf16 GEMMs (50 us and longer) measured on this project's lent H200,
2026-11-30 (tools/kernels/h200_2026-11-30_kernels.jsonl): max 0.78, K_half 256, 6% mean
absolute error. The large GEMMs of transformer layers ran at 620-800 TFLOP/s there (median
~690; 8192^3 at 769, the vendor-style "maximum achievable" figure, 794 in Bekman's MAMF
table): the fit follows the typical shape, not the best one, and gives 724 for 8192^3.
H100 SXM has the same die, clocks and 700 W limit: same constants. A100 (no shape sweep
here): max efficiency set so that 8192^3 gives 268 TFLOP/s, Bekman's ml-engineering MAMF
table (github.com/stas00/ml-engineering, compute/accelerator; A100 SXM 267.9-271). K_half
is Hopper's scaled by the per-SM matmul rate (the K loop's prologue and epilogue are a
fixed latency; an A100 SM computes a K tile 2.6x slower): 256 x (312/108) / (989/132) = 99. Misaligned GEMMs (a dimension not a multiple of 8) ran at 0.21 of the
aligned model on the H200 (65 shapes, median): `gemm_misaligned_factor`.

Streaming kernels: `memory_efficiency` is the share of the datasheet HBM rate a device-to-
device copy reaches: 4.19 of 4.8 TB/s measured on the H200 (0.87; ~3.0 of 3.35 on an H100
in an earlier session, 0.90). `kernel_overhead_s` = 2 us of GPU time per kernel: a CUDA
graph of tiny kernels replays at 0.8 us each on the H200 (no host), and raw
cuLaunchKernel latency is 1.3-3 us (tools/published/kernels/launch_bandwidth_optimizer.csv).
Host-side launch cost belongs to the software stack (simtrain/scenario/stack.py).

Attention: the constant efficiencies below apply only where no measured curve exists (TPUs);
GPUs use simtrain/data/attention.toml through simtrain.workload.kernels.
`sustained_fraction` is 1.0 here: the share a training step sustains is the software
stack's (stacks/*.toml), multiplied in by the plan.
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
    # A GEMM with a dimension that is not a multiple of 8 elements runs without the aligned
    # (TMA / vectorised) kernels: this share of the aligned rate.
    gemm_misaligned_factor: float = 1.0


# Tile menus: CUTLASS/cuBLAS Hopper kernels use 128x256 and 256x128 warp-specialized tiles,
# smaller tiles lose operand reuse (relative efficiencies are estimates from CUTLASS
# profiler sweeps; they only matter when they win on wave quantization).
_HOPPER_TILES = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.93), (64, 128, 0.80))
_AMPERE_TILES = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.95), (64, 128, 0.82))
_TPU_TILES = ((128, 128, 1.0),)  # 128x128 MXU

CATALOG: dict[str, Device] = {
    # NVIDIA A100 Tensor Core GPU datasheet: 312 TFLOP/s dense BF16; 40GB HBM2 1,555 GB/s;
    # 80GB HBM2e 2,039 GB/s; 108 SMs (A100 whitepaper). Copy efficiency assumed 0.85.
    "A100-40GB": Device("A100-40GB", 312e12, 1555e9, 40 * 2**30, 108, _AMPERE_TILES, 0.871, 99, 0.70, 0.63, 0.85, 2e-6, 1.0, 0.21),
    "A100-80GB": Device("A100-80GB", 312e12, 2039e9, 80 * 2**30, 108, _AMPERE_TILES, 0.871, 99, 0.70, 0.63, 0.85, 2e-6, 1.0, 0.21),
    # NVIDIA H100 datasheet (SXM5): 989 TFLOP/s dense BF16 (1,979 with sparsity), HBM3
    # 3.35 TB/s, 80 GB (nvidia-smi shows 81,559 MiB on the lent H100, device tool notes); 132 SMs.
    "H100-SXM": Device("H100-SXM", 989e12, 3.35e12, 81559 * 2**20, 132, _HOPPER_TILES, 0.78, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21),
    # NVIDIA H200 datasheet: same compute as H100 SXM, HBM3e 4.8 TB/s, 141 GB (nvidia-smi: 143,771 MiB).
    "H200": Device("H200", 989e12, 4.8e12, 143771 * 2**20, 132, _HOPPER_TILES, 0.78, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21),
    # NVIDIA DGX/HGX B200 datasheet: 2.25 PFLOP/s dense BF16 per GPU, HBM3e 8 TB/s, 180 GB;
    # 148 SMs. GEMM efficiency from Bekman's MAMF table (B200: 1,745 of 2,250 TFLOP/s
    # for the best shape, 0.78) scaled like Hopper's best-to-typical (769 -> 724): 0.73.
    "B200": Device("B200", 2.25e15, 8e12, 180e9, 148, _HOPPER_TILES, 0.73, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21),
    # Google Cloud TPU v4 docs: 275 TFLOP/s BF16, 32 GiB HBM2 at 1,200 GB/s; 2 TensorCores x
    # 4 MXUs of 128x128. Efficiencies assumed (no public MAMF measurement).
    "TPU-v4": Device("TPU-v4", 275e12, 1.2e12, 32 * 2**30, 8, _TPU_TILES, 0.85, 256, 0.55, 0.45, 0.85, 2e-6),
    # Google Cloud TPU v5p docs: 459 TFLOP/s BF16, 95 GiB HBM2e at 2,765 GB/s; 4 MXUs per
    # TensorCore, 2 TensorCores.
    "TPU-v5p": Device("TPU-v5p", 459e12, 2.765e12, 95 * 2**30, 8, _TPU_TILES, 0.85, 256, 0.55, 0.45, 0.85, 2e-6),
}

ALIASES = {"H100": "H100-SXM", "A100": "A100-80GB", "TPUv4": "TPU-v4", "TPUv5p": "TPU-v5p", "v5p": "TPU-v5p", "v4": "TPU-v4"}


# GPU family of each device: which measured attention curves apply (simtrain/data/attention.toml;
# B200 takes Hopper's as fractions of its own peak, an assumption without a measurement).
# TPUs have no curve and use the constant efficiencies above (Pallas flash attention, assumed).
FAMILY = {"A100-40GB": "ampere", "A100-80GB": "ampere", "H100-SXM": "hopper", "H200": "hopper", "B200": "hopper",
          "TPU-v4": "tpu", "TPU-v5p": "tpu"}


def get_device(name: str, field: str = "cluster.device") -> Device:
    key = ALIASES.get(name, name)
    if key not in CATALOG:
        raise SimtrainError(f"{field} = {name!r}: unknown device; use one of {', '.join(CATALOG)}")
    return CATALOG[key]


def scaled(dev: Device, **changes: float) -> Device:
    """A what-if copy of a device (e.g. a slower straggler)."""
    return dataclasses.replace(dev, **changes)
