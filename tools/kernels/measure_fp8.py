"""Measure FP8 against BF16 GEMMs and grouped expert GEMMs, the constants of FP8 and MoE costs.

python measure_fp8.py OUT_DIR [--smoke]
- gemm: torch._scaled_mm (E4M3 x E4M3 -> BF16, per-tensor scales, the kernel Transformer
  Engine's per-tensor recipe runs) against torch.mm in BF16, over square shapes and the
  linear layers of Llama 3 8B/70B and Mixtral at TP 1-8 (M = 8192 tokens): checks
  `gemm_fp8_max_efficiency` (0.689 on Hopper, derived from Bekman's MAMF table) and the
  doubled K_half of simtrain/hardware/devices.py.
- cast: a bf16 -> fp8 cast of X and of X^T (what simtrain/workload/fp8.py prices at 5.2 B
  per element).
- grouped: E experts of m tokens each as one batched matmul (torch.bmm, the layout a
  grouped GEMM reads) for the expert shapes of Mixtral (h 4096, ffn 14336), DeepSeek-V3
  (7168, 2048) and Qwen3 30B-A3B (2048, 768), m from 64 to 16,384: checks the tile model's
  wave quantization for experts with few tokens (simtrain/workload/moe.py).
Written in the session that added FP8 and MoE (issue 17) and not run there: no device was
lent. `--smoke` runs tiny bf16 sizes on the CPU to check the script. Writes OUT_DIR/fp8.jsonl.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

SMOKE = "--smoke" in sys.argv
OUT = [a for a in sys.argv[1:] if not a.startswith("--")][0]
DEV = "cpu" if SMOKE else "cuda"
BF16 = torch.bfloat16
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "fp8.jsonl"), "a")


def emit(section: str, **kw) -> None:
    kw["section"] = section
    LOG.write(json.dumps(kw) + "\n")
    LOG.flush()


def gpu_time(fn, reps: int = 20, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    if SMOKE:
        a = time.perf_counter()
        fn()
        return time.perf_counter() - a
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / 1e3 / reps


def gemm(m: int, n: int, k: int) -> None:
    a = torch.randn(m, k, device=DEV, dtype=BF16)
    b = torch.randn(n, k, device=DEV, dtype=BF16)  # row-major (n, k): b.t() is the "TN" layout FP8 needs
    t_bf16 = gpu_time(lambda: torch.mm(a, b.t()))
    row = dict(m=m, n=n, k=k, bf16_s=t_bf16, bf16_tflops=2 * m * n * k / t_bf16 / 1e12)
    if not SMOKE:
        fa, fb = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
        one = torch.ones((), device=DEV, dtype=torch.float32)
        t_fp8 = gpu_time(lambda: torch._scaled_mm(fa, fb.t(), scale_a=one, scale_b=one, out_dtype=BF16))
        row.update(fp8_s=t_fp8, fp8_tflops=2 * m * n * k / t_fp8 / 1e12)
        t_cast = gpu_time(lambda: (a.to(torch.float8_e4m3fn), a.t().contiguous().to(torch.float8_e4m3fn)))
        row.update(cast_transpose_s=t_cast, cast_elements=m * k)  # two casts (X and X^T) of m*k elements
    emit("gemm", **row)


def grouped(experts: int, m: int, h: int, f: int) -> None:
    x = torch.randn(experts, m, h, device=DEV, dtype=BF16)
    w = torch.randn(experts, h, 2 * f, device=DEV, dtype=BF16)
    t = gpu_time(lambda: torch.bmm(x, w))
    emit("grouped", experts=experts, m=m, h=h, n=2 * f, seconds=t, tflops=2 * experts * m * h * 2 * f / t / 1e12)


def main() -> None:
    if SMOKE:
        gemm(64, 64, 64)
        grouped(2, 16, 32, 32)
        return
    for n in (1024, 2048, 4096, 8192, 16384):
        gemm(n, n, n)
    for h, f, heads, kv in ((4096, 14336, 32, 8), (8192, 28672, 64, 8)):
        for tp in (1, 2, 4, 8):
            q = heads * 128 // tp
            kvw = max(1, kv // tp) * 128
            for m_, n_, k_ in ((8192, q + 2 * kvw, h), (8192, h, q), (8192, 2 * f // tp, h), (8192, h, f // tp)):
                gemm(m_, n_, k_)
    for e, h, f in ((2, 4096, 14336), (4, 7168, 2048), (8, 2048, 768), (16, 2048, 768)):
        for m in (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384):
            grouped(e, m, h, f)


if __name__ == "__main__":
    main()
