"""Measure whole transformer layers (eager PyTorch, bf16) and sustained GEMM throughput.

python measure_layers.py OUT_DIR [--smoke]
- sustained: back-to-back 8192^3 bf16 GEMMs for ~12 s, throughput per 0.5 s window and the
  SM clock / power nvidia-smi reports meanwhile (power- and thermal-limited clocks).
- layers: one decoder layer (pre-norm, attention via SDPA, MLP), forward and forward+backward,
  for several shapes (as one tensor-parallel rank holds them), norm kernels fused/unfused and
  SDPA backends flash/cudnn. GPU time by CUDA events, wall time by perf_counter around
  synchronised calls, and one profiled iteration's kernel count and per-kernel-family GPU time.
Writes OUT_DIR/layers.jsonl as it goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

SMOKE = "--smoke" in sys.argv
OUT = [a for a in sys.argv[1:] if not a.startswith("--")][0]
DEV = "cpu" if SMOKE else "cuda"
BF16 = torch.bfloat16
T0 = time.time()
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "layers.jsonl"), "a")


def emit(section: str, **kw) -> None:
    kw["section"] = section
    LOG.write(json.dumps(kw) + "\n")
    LOG.flush()


def sync():
    if not SMOKE:
        torch.cuda.synchronize()


def gpu_time(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    sync()
    if SMOKE:
        a = time.perf_counter(); fn(); return time.perf_counter() - a, time.perf_counter() - a
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a = time.perf_counter()
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    e.synchronize()
    wall = (time.perf_counter() - a) / reps
    return s.elapsed_time(e) / 1e3 / reps, wall


def sustained():
    if SMOKE:
        return
    n = 8192
    a = torch.randn(n, n, device=DEV, dtype=BF16)
    b = torch.randn(n, n, device=DEV, dtype=BF16)
    c = torch.empty(n, n, device=DEV, dtype=BF16)
    samples = []
    stop = threading.Event()

    def smi():
        while not stop.is_set():
            try:
                r = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=5).stdout.strip()
                samples.append((round(time.time() - T0, 2), r))
            except Exception as exc:
                samples.append((round(time.time() - T0, 2), repr(exc)))
            time.sleep(0.5)

    th = threading.Thread(target=smi, daemon=True)
    th.start()
    flops = 2.0 * n ** 3
    end = time.time() + 12
    while time.time() < end:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(200):
            torch.matmul(a, b, out=c)
        e.record(); e.synchronize()
        t = s.elapsed_time(e) / 1e3
        emit("sustained", t=round(time.time() - T0, 2), tflops=200 * flops / t / 1e12)
    stop.set(); th.join(2)
    emit("sustained_smi", samples=samples)


def rms_unfused(x, w, eps=1e-5):
    xf = x.float()
    var = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(x.dtype)


def rope(x, cos, sin):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Layer(torch.nn.Module):
    def __init__(self, h, heads, kv, hd, ffn, gated, norm, backend):
        super().__init__()
        self.h, self.heads, self.kv, self.hd, self.gated, self.norm, self.backend = h, heads, kv, hd, gated, norm, backend
        mk = lambda o, i: torch.nn.Parameter(torch.randn(o, i, device=DEV, dtype=BF16) * 0.02)
        self.wqkv = mk((heads + 2 * kv) * hd, h)
        self.wo = mk(h, heads * hd)
        self.wup = mk((2 if gated else 1) * ffn, h)
        self.wdown = mk(h, ffn)
        self.n1 = torch.nn.Parameter(torch.ones(h, device=DEV, dtype=BF16))
        self.n2 = torch.nn.Parameter(torch.ones(h, device=DEV, dtype=BF16))
        self.b1 = torch.nn.Parameter(torch.zeros(h, device=DEV, dtype=BF16))
        self.b2 = torch.nn.Parameter(torch.zeros(h, device=DEV, dtype=BF16))

    def _norm(self, x, w, b):
        if self.norm == "unfused_rms":
            return rms_unfused(x, w)
        if self.norm == "fused_rms":
            return F.rms_norm(x, (self.h,), w)
        return F.layer_norm(x, (self.h,), w, b)

    def forward(self, x, cos, sin):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        B, S, _ = x.shape
        y = self._norm(x, self.n1, self.b1)
        qkv = F.linear(y, self.wqkv)
        q, k, v = qkv.split([self.heads * self.hd, self.kv * self.hd, self.kv * self.hd], dim=-1)
        q = q.view(B, S, self.heads, self.hd).transpose(1, 2)
        k = k.view(B, S, self.kv, self.hd).transpose(1, 2)
        v = v.view(B, S, self.kv, self.hd).transpose(1, 2)
        if cos is not None:
            q, k = rope(q, cos, sin), rope(k, cos, sin)
        if self.kv != self.heads:
            k = k.repeat_interleave(self.heads // self.kv, dim=1)
            v = v.repeat_interleave(self.heads // self.kv, dim=1)
        be = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[self.backend]
        with sdpa_kernel([be]):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(B, S, self.heads * self.hd)
        x = x + F.linear(a, self.wo)
        y = self._norm(x, self.n2, self.b2)
        u = F.linear(y, self.wup)
        if self.gated:
            g, u = u.chunk(2, dim=-1)
            u = F.silu(g) * u
        else:
            u = F.gelu(u, approximate="tanh")
        return x + F.linear(u, self.wdown)


CONFIGS = [
    # name, hidden, heads, kv_heads, head_dim, ffn, gated, rope  (one TP rank's share)
    ("gpt-125m", 768, 12, 12, 64, 3072, False, False),
    ("gpt-1.3b", 2048, 16, 16, 128, 8192, False, False),
    ("llama3-8b", 4096, 32, 8, 128, 14336, True, True),
    ("llama3-8b-tp2", 4096, 16, 4, 128, 7168, True, True),
    ("llama3-70b-tp8", 8192, 8, 1, 128, 3584, True, True),
    ("llama3-405b-tp8", 16384, 16, 1, 128, 6656, True, True),
]


def layers():
    cfgs = CONFIGS if not SMOKE else [("tiny", 64, 4, 2, 16, 128, True, True)]
    seqmb = ((2048, 1), (2048, 4), (8192, 1)) if not SMOKE else ((32, 1),)
    budget_end = time.time() + 170
    for name, h, heads, kv, hd, ffn, gated, use_rope in cfgs:
        for seq, mb in seqmb:
            variants = [("fused_rms" if gated else "layernorm", "cudnn"), ("fused_rms" if gated else "layernorm", "flash")]
            if gated:
                variants.append(("unfused_rms", "flash"))
            if SMOKE:
                variants = [("unfused_rms", "math"), ("fused_rms", "math")]
            for norm, backend in variants:
                if time.time() > budget_end:
                    emit("layer", error="time budget reached")
                    return
                try:
                    layer = Layer(h, heads, kv, hd, ffn, gated, norm, backend)
                    x = torch.randn(mb, seq, h, device=DEV, dtype=BF16, requires_grad=True)
                    dy = torch.randn(mb, seq, h, device=DEV, dtype=BF16)
                    cos = torch.randn(seq, hd, device=DEV, dtype=BF16) if use_rope else None
                    sin = torch.randn(seq, hd, device=DEV, dtype=BF16) if use_rope else None
                    fwd = lambda: layer(x, cos, sin)
                    fb = lambda: layer(x, cos, sin).backward(dy)
                    tf, wf = gpu_time(fwd)
                    tfb, wfb = gpu_time(fb)
                    rec = dict(config=name, hidden=h, heads=heads, kv_heads=kv, head_dim=hd, ffn=ffn, gated=gated,
                               seq=seq, micro_batch=mb, norm=norm, attention=backend,
                               fwd_gpu_s=tf, fwd_wall_s=wf, fwd_bwd_gpu_s=tfb, fwd_bwd_wall_s=wfb)
                    emit("layer", **rec)
                    if not SMOKE:
                      try:
                        from torch.profiler import ProfilerActivity, profile
                        with profile(activities=[ProfilerActivity.CUDA]) as prof:
                            fb(); sync()
                        fam = {}
                        n = 0
                        for ev in prof.events():
                            if "CUDA" not in str(ev.device_type):
                                continue
                            n += 1
                            key = ev.name[:60]
                            fam.setdefault(key, [0, 0.0])
                            fam[key][0] += 1
                            fam[key][1] += ev.device_time / 1e6 if hasattr(ev, "device_time") else ev.cuda_time / 1e6
                        rec["kernels_fwd_bwd"] = n
                        rec["kernels"] = sorted(([k, c, round(t, 7)] for k, (c, t) in fam.items()), key=lambda r: -r[2])[:40]
                        emit("layer_profile", config=name, seq=seq, micro_batch=mb, norm=norm, attention=backend,
                             kernels_fwd_bwd=n, kernels=rec["kernels"])
                      except Exception as exc:
                        emit("layer_profile", config=name, error=repr(exc)[:300])
                    print(f"  {name} s{seq} mb{mb} {norm} {backend}: fwd {tf*1e3:.3f} ms, fwd+bwd {tfb*1e3:.3f} ms "
                          f"(wall {wfb*1e3:.3f}) kernels {rec.get('kernels_fwd_bwd')}", flush=True)
                except Exception as exc:
                    emit("layer", config=name, seq=seq, micro_batch=mb, norm=norm, attention=backend, error=repr(exc)[:300])
                    print(f"  {name} failed: {exc!r}"[:300], flush=True)
                finally:
                    layer = x = dy = None
                    if not SMOKE:
                        torch.cuda.empty_cache()


if __name__ == "__main__":
    for f in (layers, sustained):
        t = time.time()
        print(f"[{t - T0:6.1f}s] {f.__name__}", flush=True)
        try:
            f()
        except Exception as exc:
            emit(f.__name__, error=repr(exc))
            print(f"{f.__name__} failed: {exc!r}", flush=True)
    print(f"done in {time.time() - T0:.1f}s", flush=True)
