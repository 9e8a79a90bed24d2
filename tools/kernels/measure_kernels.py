"""Measure the kernel efficiencies simtrain's compute model needs, on one GPU.

Run on a machine with a CUDA GPU and PyTorch:  python measure_kernels.py OUT_DIR
Writes OUT_DIR/kernels.jsonl (one JSON object per measurement) as it goes, so a run cut
short keeps what it measured. Sections: env, launch, gemm, attention, memory-bound ops,
cross-entropy, optimizer. Timings are CUDA-event times (median of repeats) after warm-up.
`--smoke` runs tiny sizes on the CPU to check the script itself.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SMOKE = "--smoke" in sys.argv
OUT = [a for a in sys.argv[1:] if not a.startswith("--")][0]
DEV = "cpu" if SMOKE else "cuda"
BF16 = torch.bfloat16
T0 = time.time()
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "kernels.jsonl"), "a")


def emit(section: str, **kw) -> None:
    kw["section"] = section
    LOG.write(json.dumps(kw) + "\n")
    LOG.flush()


def sync() -> None:
    if not SMOKE:
        torch.cuda.synchronize()


def timeit(fn, reps: int = 10, warmup: int = 2) -> float:
    """Median seconds per call, CUDA events per call."""
    for _ in range(warmup):
        fn()
    sync()
    if SMOKE:
        ts = []
        for _ in range(max(1, min(reps, 2))):
            a = time.perf_counter(); fn(); ts.append(time.perf_counter() - a)
        return sorted(ts)[len(ts) // 2]
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def reps_for(est_s: float, budget_s: float = 0.06) -> int:
    return int(max(3, min(25, budget_s / max(est_s, 1e-6))))


def section(name):
    def deco(f):
        def run():
            t = time.time()
            print(f"[{time.time() - T0:6.1f}s] {name} ...", flush=True)
            try:
                f()
            except Exception as exc:  # keep the other sections
                emit(name, error=repr(exc))
                print(f"  {name} failed: {exc!r}", flush=True)
            print(f"  {name} took {time.time() - t:.1f}s", flush=True)
        return run
    return deco


@section("env")
def env():
    info = {"torch": torch.__version__, "smoke": SMOKE}
    if not SMOKE:
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, sms=p.multi_processor_count, mem=p.total_memory,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        try:
            info["smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.max.sm,clocks.max.mem,power.limit,driver_version",
                                          "--format=csv"], capture_output=True, text=True, timeout=20).stdout
        except Exception as exc:
            info["smi"] = repr(exc)
    for mod in ("flash_attn", "flash_attn_interface", "transformer_engine", "apex", "liger_kernel", "triton"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "present")
        except Exception:
            info[mod] = None
    emit("env", **info)
    print(info, flush=True)


@section("launch")
def launch():
    x = torch.zeros(1, device=DEV)
    n = 200 if SMOKE else 20000
    for _ in range(100):
        x.add_(1)
    sync()
    a = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    sync()
    emit("launch", what="eager tiny add, wall per kernel", seconds=(time.perf_counter() - a) / n)
    if SMOKE:
        return
    # GPU-side time of back-to-back tiny kernels: a CUDA graph of 1,000 adds (no CPU launch cost)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            x.add_(1)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(1000):
            x.add_(1)
    t = timeit(g.replay, reps=10)
    emit("launch", what="cuda graph tiny add, GPU time per kernel", seconds=t / 1000)
    # a small but real kernel (64K elements, like a norm on a short micro-batch slice), eager
    y = torch.randn(1 << 16, device=DEV, dtype=BF16)
    t = timeit(lambda: [y.mul_(1.0) for _ in range(100)], reps=10) / 100
    emit("launch", what="eager 64K-element bf16 mul_, per kernel", seconds=t)


def gemm_shapes():
    shapes = set()
    for n in (512, 1024, 2048, 4096, 6144, 8192, 12288, 16384):
        shapes.add((n, n, n))
    # transformer GEMMs: (tokens, out, in) forward; dgrad (tokens, in, out); wgrad (in, out, tokens)
    models = {  # hidden, qkv_out, ffn (gated: up = 2*ffn)
        "gpt-125m": (768, 3 * 768, 3072, False), "gpt-1.3b": (2048, 3 * 2048, 8192, False),
        "llama3-8b": (4096, 6144, 14336, True), "llama-13b": (5120, 3 * 5120, 13824, True),
        "llama3-70b": (8192, 10240, 28672, True), "gpt3-175b": (12288, 3 * 12288, 49152, False),
        "llama3-405b": (16384, 18432, 53248, True),
    }
    for name, (h, qkv, ffn, gated) in models.items():
        for tp in (1, 2, 4, 8):
            if h >= 12288 and tp < 4:
                continue
            if h <= 2048 and tp > 2:
                continue
            for toks in (2048, 8192):
                up = (2 if gated else 1) * ffn // tp
                for (o, i) in ((qkv // tp, h), (h, h // tp), (up, h), (h, ffn // tp)):
                    shapes.add((toks, o, i))      # forward Y = X W
                    shapes.add((toks, i, o))      # input gradient
                    shapes.add((i, o, toks))      # weight gradient
    rnd = random.Random(0)
    for _ in range(80):
        m, n, k = (int(2 ** rnd.uniform(8, 15)) for _ in range(3))
        shapes.add((m, n, k))
    return sorted(shapes, key=lambda s: s[0] * s[1] * s[2])


@section("gemm")
def gemm():
    shapes = gemm_shapes()
    if SMOKE:
        shapes = [(64, 64, 64), (128, 64, 32)]
    print(f"  {len(shapes)} shapes", flush=True)
    budget_end = time.time() + 100
    for (m, n, k) in shapes:
        if time.time() > budget_end:
            emit("gemm", error="time budget reached", remaining=len(shapes))
            break
        a = torch.randn(m, k, device=DEV, dtype=BF16)
        b = torch.randn(k, n, device=DEV, dtype=BF16)
        flops = 2.0 * m * n * k
        t = timeit(lambda: a @ b, reps=reps_for(flops / 6e14))
        emit("gemm", m=m, n=n, k=k, seconds=t, tflops=flops / t / 1e12)
        del a, b


def attn_flops(b, h, s, d, causal):
    f = 4.0 * b * h * s * s * d
    return f / 2 if causal else f


@section("attention")
def attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    seqs = (512, 1024, 2048, 4096, 8192, 16384, 32768)
    total_tokens = 16384
    if SMOKE:
        seqs, total_tokens, backends = (64, 128), 128, {"math": SDPBackend.MATH}
    fa3 = None
    try:
        import flash_attn_interface as fa3  # FlashAttention-3 (Hopper), if installed
    except Exception:
        pass
    budget_end = time.time() + 150
    for hd in (128, 64):
        heads = 2048 // hd
        for causal in (True, False):
            for s in seqs:
                b = max(1, total_tokens // s)
                for name, be in list(backends.items()) + ([("fa3", None)] if fa3 else []):
                    if time.time() > budget_end:
                        emit("attention", error="time budget reached")
                        return
                    if name == "math" and s > 8192:
                        continue
                    try:
                        q, k, v = (torch.randn(b, heads, s, hd, device=DEV, dtype=BF16, requires_grad=True) for _ in range(3))
                        do = torch.randn(b, heads, s, hd, device=DEV, dtype=BF16)
                        if name == "fa3":
                            qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
                            dot = do.transpose(1, 2).contiguous()
                            def fwd():
                                r = fa3.flash_attn_func(qt, kt, vt, causal=causal)
                                return r[0] if isinstance(r, tuple) else r
                            def fb():
                                fwd().backward(dot)
                        else:
                            def fwd():
                                with sdpa_kernel([be]):
                                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                            def fb():
                                fwd().backward(do)
                        fl = attn_flops(b, heads, s, hd, causal)
                        tf = timeit(fwd, reps=reps_for(fl / 3e14))
                        tfb = timeit(fb, reps=reps_for(3.5 * fl / 3e14))
                        tb = max(tfb - tf, 1e-9)
                        emit("attention", kernel=name, head_dim=hd, causal=causal, seq_len=s, batch=b, heads=heads,
                             fwd_s=tf, fwd_bwd_s=tfb, bwd_s=tb, fwd_tflops=fl / tf / 1e12,
                             bwd_tflops=2.5 * fl / tb / 1e12, fwd_bwd_tflops=3.5 * fl / tfb / 1e12)
                    except Exception as exc:
                        emit("attention", kernel=name, head_dim=hd, causal=causal, seq_len=s, error=repr(exc)[:300])
                    finally:
                        q = k = v = do = None
                        if not SMOKE:
                            torch.cuda.empty_cache()


def rms_unfused(x, w, eps=1e-5):
    # Hugging Face LlamaRMSNorm, eager: what an unfused stack runs
    xf = x.float()
    var = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(var + eps)
    return w * xf.to(x.dtype)


def rope_eager(x, cos, sin):
    # Hugging Face apply_rotary_pos_emb, eager
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


@section("memory")
def memory():
    toks = 256 if SMOKE else 8192
    # streaming copy: the achievable-bandwidth ceiling
    n = (1 << 16) if SMOKE else (1 << 30)
    src = torch.empty(n, device=DEV, dtype=torch.uint8)
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), reps=10)
    emit("memory", op="copy", bytes=2 * n, seconds=t, gbps=2 * n / t / 1e9)
    del src, dst
    for h, ffn in ((4096, 14336), (8192, 28672)) if not SMOKE else ((64, 128),):
        x = torch.randn(toks, h, device=DEV, dtype=BF16, requires_grad=True)
        w = torch.ones(h, device=DEV, dtype=BF16, requires_grad=True)
        bias = torch.zeros(h, device=DEV, dtype=BF16, requires_grad=True)
        dy = torch.randn(toks, h, device=DEV, dtype=BF16)
        E = toks * h  # elements
        ops = {
            # name: (forward fn, minimal bytes fwd, minimal bytes bwd)
            "rmsnorm_unfused_hf": (lambda: rms_unfused(x, w), 4 * E, 6 * E),
            "rmsnorm_torch": (lambda: F.rms_norm(x, (h,), w), 4 * E, 6 * E),
            "layernorm_torch_fused": (lambda: F.layer_norm(x, (h,), w, bias), 4 * E, 6 * E),
            "residual_add": (lambda: x + dy, 6 * E, 4 * E),
            "dropout_p0.1": (lambda: F.dropout(x, 0.1, training=True), 4 * E, 4 * E),
        }
        for name, (fn, bf, bb) in ops.items():
            tf = timeit(fn, reps=20)
            out = fn()
            tfb = timeit(lambda: torch.autograd.grad(fn(), (x,), dy), reps=20)
            emit("memory", op=name, hidden=h, tokens=toks, fwd_s=tf, fwd_bwd_s=tfb, min_bytes_fwd=bf, min_bytes_bwd=bb,
                 fwd_gbps=bf / tf / 1e9, bwd_gbps=bb / max(tfb - tf, 1e-9) / 1e9)
            del out
        # activations on the MLP's intermediate tensor
        a = torch.randn(toks, ffn, device=DEV, dtype=BF16, requires_grad=True)
        g = torch.randn(toks, ffn, device=DEV, dtype=BF16, requires_grad=True)
        dI = torch.randn(toks, ffn, device=DEV, dtype=BF16)
        I = toks * ffn
        acts = {
            "swiglu_eager": (lambda: F.silu(g) * a, (g, a), 6 * I, 10 * I),
            "gelu_tanh": (lambda: F.gelu(a, approximate="tanh"), (a,), 4 * I, 6 * I),
        }
        for name, (fn, ins, bf, bb) in acts.items():
            tf = timeit(fn, reps=20)
            tfb = timeit(lambda: torch.autograd.grad(fn(), ins, dI), reps=20)
            emit("memory", op=name, ffn=ffn, tokens=toks, fwd_s=tf, fwd_bwd_s=tfb, min_bytes_fwd=bf, min_bytes_bwd=bb,
                 fwd_gbps=bf / tf / 1e9, bwd_gbps=bb / max(tfb - tf, 1e-9) / 1e9)
        del a, g, dI
        # rotary embedding on q (heads of 128) eager
        hd = 128 if not SMOKE else 16
        q = torch.randn(1, h // hd, toks, hd, device=DEV, dtype=BF16, requires_grad=True)
        cos = torch.randn(toks, hd, device=DEV, dtype=BF16)
        sin = torch.randn(toks, hd, device=DEV, dtype=BF16)
        dq = torch.randn_like(q)
        tf = timeit(lambda: rope_eager(q, cos, sin), reps=20)
        tfb = timeit(lambda: torch.autograd.grad(rope_eager(q, cos, sin), (q,), dq), reps=20)
        emit("memory", op="rope_eager_hf", hidden=h, tokens=toks, fwd_s=tf, fwd_bwd_s=tfb, min_bytes_fwd=4 * E,
             min_bytes_bwd=4 * E, fwd_gbps=4 * E / tf / 1e9, bwd_gbps=4 * E / max(tfb - tf, 1e-9) / 1e9)
        del x, w, bias, dy, q, dq
        if not SMOKE:
            torch.cuda.empty_cache()


@section("cross_entropy")
def cross_entropy():
    for toks, vocab in ((8192, 128256), (8192, 50304), (4096, 32000)) if not SMOKE else ((64, 512),):
        logits = torch.randn(toks, vocab, device=DEV, dtype=BF16, requires_grad=True)
        tgt = torch.randint(0, vocab, (toks,), device=DEV)
        fwd = lambda: F.cross_entropy(logits.float(), tgt)
        tf = timeit(fwd, reps=10)
        tfb = timeit(lambda: torch.autograd.grad(fwd(), (logits,)), reps=10)
        emit("cross_entropy", tokens=toks, vocab=vocab, fwd_s=tf, fwd_bwd_s=tfb, logits_bytes=2 * toks * vocab)
        del logits
        if not SMOKE:
            torch.cuda.empty_cache()


@section("optimizer")
def optimizer():
    cases = [("one_tensor", [1 << 28]), ("transformer_like", [4096 * 4096] * 64 + [4096] * 128)]
    if SMOKE:
        cases = [("one_tensor", [1 << 12]), ("many", [64] * 10)]
    for name, sizes in cases:
        params = [torch.nn.Parameter(torch.randn(n, device=DEV, dtype=torch.float32)) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        total = sum(sizes)
        for impl in ("fused", "foreach"):
            if impl == "fused" and SMOKE:
                continue
            opt = torch.optim.AdamW(params, lr=1e-4, **{impl: True})
            t = timeit(opt.step, reps=5)
            emit("optimizer", case=name, impl=impl, tensors=len(sizes), params=total, seconds=t,
                 seconds_per_param=t / total, bytes_per_param_min=28)
            del opt
        tn = timeit(lambda: torch.nn.utils.clip_grad_norm_(params, 1.0), reps=5)
        emit("optimizer", case=name, impl="clip_grad_norm", tensors=len(sizes), params=total, seconds=tn,
             seconds_per_param=tn / total)
        del params
        if not SMOKE:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    for f in (env, launch, memory, cross_entropy, optimizer, attention, gemm):
        f()
    print(f"done in {time.time() - T0:.1f}s", flush=True)
