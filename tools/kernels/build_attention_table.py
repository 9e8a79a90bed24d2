"""Build simtrain/data/attention.toml: fused-attention throughput curves per GPU family and
kernel, from measurements and published kernel benchmarks. Run from the repository root:

    python tools/kernels/build_attention_table.py

Sources (every number in the output comes from one of these, by the rule stated per table):
- tools/kernels/h200_2026-11-30_kernels.jsonl: this project's measurement on a lent H200
  (tools/kernels/measure_kernels.py; PyTorch 2.11 SDPA, cuDNN 9.19): forward and backward
  TFLOP/s of the FLASH_ATTENTION backend (PyTorch's FlashAttention-2 port), the
  CUDNN_ATTENTION backend and the EFFICIENT_ATTENTION backend (xFormers-style cutlass
  kernel), 16k tokens per batch, hidden 2048 (16 heads of 128 or 32 of 64), causal and not.
  H100 SXM has the same SMs, clocks and power limit: its compute-bound kernels are taken
  to run at the same rate.
- tools/published/kernels/attention_fa2_paper.csv: FlashAttention-2 paper (Dao 2023), the
  A100 80GB forward+backward figure (FlashAttention-2, FlashAttention v1, Triton
  FlashAttention, xFormers, PyTorch standard attention), same 16k-token setup.
  The paper's forward-only and backward-only A100 figures are not transcribed, so each
  forward+backward point is split into forward and backward with the forward/backward
  ratio measured for FlashAttention-2 on the H200 at the same sequence length, head
  dimension and mask (an assumption: same algorithm, same work partitioning).
- tools/published/kernels/attention_fa3_paper.csv: FlashAttention-3 paper (Shah et al.
  2024), H100 forward figure. Its backward figure is not transcribed first-hand, so FA3's
  backward is its forward times the backward/forward ratio measured for cuDNN's fused
  attention on the H200 (both Hopper-native warpgroup kernels; assumption).
- tools/published/kernels/attention_blackwell_cudnn_frontend.csv: NVIDIA's cudnn-frontend SDPA
  training benchmark, committed results: B200 with cuDNN 9.13.1 through the frontend (what
  Transformer Engine calls) and flash-attn 2.7.4 (causal, 128 query / 8 KV heads of 128), and
  GB200 with cuDNN 9.18.1 (causal and not, Llama 3.1's 64 / 8 heads). Blackwell curves are
  stored on B200's peak: the causal ones are B200's own numbers, the non-causal cuDNN ones
  GB200's scaled by 2.25/2.5 (the same share of its peak; GB200's causal numbers at 2K-32K
  sit within 2-6% of B200's by that measure). No head dimension 64 was measured: the 128 curve
  stands for every head dimension on Blackwell. GB300 (Blackwell Ultra, doubled SFU exponent
  rate) with cuDNN 9.22.0 (Llama 3.1's heads, causal and not) is its own family,
  blackwell_ultra, stored on GB300's 2.5 PF peak (B300 takes the same share of its 2.25).
FLOP convention (FlashAttention benchmark scripts): forward 4*b*s^2*heads*d, halved with a
causal mask; backward 2.5x forward.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "tools" / "kernels" / "h200_2026-11-30_kernels.jsonl"
FA2 = ROOT / "tools" / "published" / "kernels" / "attention_fa2_paper.csv"
FA3 = ROOT / "tools" / "published" / "kernels" / "attention_fa3_paper.csv"
BLACKWELL = ROOT / "tools" / "published" / "kernels" / "attention_blackwell_cudnn_frontend.csv"
TEXT = ROOT / "tools" / "published" / "kernels" / "attention_text_benchmarks.csv"
OUT = ROOT / "simtrain" / "data" / "attention.toml"
SEQS = (512, 1024, 2048, 4096, 8192, 16384, 32768)


def measured() -> dict[tuple[str, int, bool], dict[int, tuple[float, float]]]:
    t: dict = defaultdict(dict)
    for line in MEASURED.read_text().splitlines():
        r = json.loads(line)
        if r.get("section") == "attention" and "error" not in r:
            t[(r["kernel"], r["head_dim"], r["causal"])][r["seq_len"]] = (r["fwd_tflops"], r["bwd_tflops"])
    return t


def published(path: Path, direction: str) -> dict[tuple[str, str, int, bool], dict[int, float]]:
    t: dict = defaultdict(dict)
    for r in csv.DictReader(open(path, newline="")):
        if r["direction"] != direction or not r["tflops"].strip():
            continue
        t[(r["gpu"], r["kernel"], int(r["head_dim"]), r["causal"] == "True")][int(r["seq_len"])] = float(r["tflops"])
    return t


def interp(curve: dict[int, float], s: int) -> float:
    xs = sorted(curve)
    if s <= xs[0]:
        return curve[xs[0]]
    if s >= xs[-1]:
        return curve[xs[-1]]
    for a, b in zip(xs, xs[1:]):
        if a <= s <= b:
            w = (math.log2(s) - math.log2(a)) / (math.log2(b) - math.log2(a))
            return curve[a] + w * (curve[b] - curve[a])
    raise AssertionError


def table(name: str, comment: str, source: str, curves: dict[tuple[int, bool], dict[int, tuple[float, float]]]) -> list[str]:
    out = [f"[{name}]", f"# {comment}", f"source = {json.dumps(source)}"]
    for hd in (64, 128):
        for causal in (True, False):
            c = curves.get((hd, causal))
            if not c:
                continue
            seqs = sorted(c)
            mask = "causal" if causal else "full"
            out.append(f"{mask}_hd{hd}_seq = {seqs}")
            out.append(f"{mask}_hd{hd}_fwd = {[round(c[s][0]) for s in seqs]}")
            out.append(f"{mask}_hd{hd}_bwd = {[round(c[s][1]) for s in seqs]}")
    return out + [""]


def blackwell() -> list[str]:
    """cuDNN and FlashAttention-2 on Blackwell, from NVIDIA's cudnn-frontend benchmark results."""
    t: dict = defaultdict(lambda: defaultdict(dict))
    for r in csv.DictReader(open(BLACKWELL, newline="")):
        if r["gpu"] == "GB300":
            continue  # Blackwell Ultra: its own family (blackwell_ultra below)
        scale = 2.25 / 2.5 if r["gpu"] == "GB200" else 1.0  # stored on B200's peak
        key = (r["gpu"], r["kernel"], int(r["head_dim"]), r["causal"] == "True")
        t[key][int(r["seq_len"])][r["direction"]] = float(r["tflops"]) * scale
    pts = lambda key: {s: (v["fwd"], v["bwd"]) for s, v in t[key].items() if s <= 32768}  # noqa: E731
    src = "NVIDIA cudnn-frontend SDPA training benchmark results (tools/published/kernels/attention_blackwell_cudnn_frontend.csv)"
    return (table("blackwell.cudnn", "cuDNN fused attention on Blackwell: B200, cuDNN 9.13.1 (causal); GB200, "
                  "cuDNN 9.18.1, scaled to B200's peak (full); head dim 128 for all", src,
                  {(128, True): pts(("B200", "cudnn", 128, True)), (128, False): pts(("GB200", "cudnn", 128, False))})
            + table("blackwell.fa2", "FlashAttention-2 (flash-attn 2.7.4) on B200, causal, head dim 128 for all", src,
                    {(128, True): pts(("B200", "fa2", 128, True))}))


def blackwell_ultra() -> list[str]:
    """cuDNN on Blackwell Ultra (GB300; B300 the same SM 10.3 die), stored on GB300's 2.5 PF:
    its doubled SFU exponent rate makes the forward ~1.2x GB200's at the same cuDNN (9.22)."""
    t: dict = defaultdict(dict)
    fa2: dict = defaultdict(dict)
    for r in csv.DictReader(open(BLACKWELL, newline="")):
        if r["gpu"] == "GB300":
            t[(int(r["head_dim"]), r["causal"] == "True")].setdefault(int(r["seq_len"]), {})[r["direction"]] = float(r["tflops"])
        if r["gpu"] == "B200" and r["kernel"] == "fa2" and int(r["seq_len"]) <= 32768:
            fa2[(int(r["head_dim"]), r["causal"] == "True")].setdefault(int(r["seq_len"]), {})[r["direction"]] = float(r["tflops"])
    curves = {k: {s: (v["fwd"], v["bwd"]) for s, v in c.items()} for k, c in t.items()}
    src = "NVIDIA cudnn-frontend SDPA training benchmark results (tools/published/kernels/attention_blackwell_cudnn_frontend.csv)"
    # FlashAttention-2's curve on Blackwell Ultra: B200's measured one at GB200's share of peak
    # (as the blackwell family stores it, which reads Azure's GB200 figure within 0.3%) times
    # the GB300/GB200 ratio of one benchmark run on both (Azure's flash-attention fwd + bwd,
    # causal, head dim 128, 8K: 399.7 / 373.9), on GB300's peak
    azure = {r["gpu"].split()[0]: float(r["tflops"]) for r in csv.DictReader(open(TEXT, newline=""))
             if r["source"].startswith("Azure AI-benchmarking-guide, Flash Attention")}
    scale = 2.5 / 2.25 * azure["GB300"] / azure["GB200"]
    fa2_curves = {k: {s: (v["fwd"] * scale, v["bwd"] * scale) for s, v in c.items()} for k, c in fa2.items()}
    return (table("blackwell_ultra.cudnn", "cuDNN fused attention on Blackwell Ultra: GB300, cuDNN 9.22.0, Llama 3.1's "
                  "64 query / 8 KV heads of 128, on GB300's peak; head dim 128 for all", src, curves)
            + table("blackwell_ultra.fa2", "FlashAttention-2 on Blackwell Ultra: B200's measured curve (flash-attn 2.7.4, "
                    f"causal) x 2.5/2.25 x {azure['GB300']}/{azure['GB200']} (Azure's GB300/GB200 flash-attention "
                    "fwd + bwd, tools/published/kernels/attention_text_benchmarks.csv), on GB300's peak; head dim 128 for all",
                    src, fa2_curves))


def main() -> None:
    m = measured()
    lines = [
        "# Fused-attention throughput (TFLOP/s, dense BF16) against sequence length, per GPU family,",
        "# kernel, head dimension (64, 128) and mask (causal, full). GENERATED by",
        "# tools/kernels/build_attention_table.py from the measurements and transcriptions it names;",
        "# do not edit by hand. FLOPs: forward 4*b*s^2*heads*d (halved when causal), backward 2.5x.",
        "",
    ]
    h200 = "H200, PyTorch 2.11 SDPA (this project's measurement, tools/kernels/h200_2026-11-30_kernels.jsonl)"
    for ours, kernel, comment in (("flash", "fa2", "FlashAttention-2 (PyTorch SDPA's flash backend; flash-attn 2.x)"),
                                  ("cudnn", "cudnn", "cuDNN fused attention (PyTorch SDPA / Transformer Engine)"),
                                  ("efficient", "xformers", "memory-efficient cutlass kernel (xFormers; SDPA's efficient backend)")):
        curves = {(hd, c): m[(ours, hd, c)] for hd in (64, 128) for c in (True, False) if m.get((ours, hd, c))}
        lines += table(f"hopper.{kernel}", comment, h200, curves)
    # FA3: published forward, backward by cuDNN's measured bwd/fwd ratio
    fa3 = published(FA3, "fwd")
    curves = {}
    for hd in (64, 128):
        for causal in (True, False):
            fwd = fa3.get(("H100 80GB SXM5", "FlashAttention-3", hd, causal))
            cud = m.get(("cudnn", hd, causal))
            if fwd and cud:
                curves[(hd, causal)] = {s: (f, f * interp({k: v[1] for k, v in cud.items()}, s)
                                            / interp({k: v[0] for k, v in cud.items()}, s)) for s, f in fwd.items()}
    lines += table("hopper.fa3", "FlashAttention-3 (Hopper only): paper forward; backward = forward x cuDNN's measured bwd/fwd ratio",
                   "Shah et al. 2024, FlashAttention-3, H100 forward figure (tools/published/kernels/attention_fa3_paper.csv)",
                   curves)
    # Hopper kernels without our own measurement, from the papers' H100 figures:
    # - Triton FlashAttention: the FA3 paper's H100 forward ("Triton": the Triton project's own
    #   fused-attention kernel of 2024), backward = forward x FA2's measured bwd/fwd ratio (the
    #   same tiling algorithm; an assumption). flash-attn's older flash_attn_triton (2022, what
    #   llm-foundry's attn_impl "triton" ran) is not measured on Hopper and is likely slower:
    #   predictions for it on H100 lean fast;
    # - FlashAttention v1: the FA2 paper's H100 forward+backward, split by FA2's measured ratio.
    fa2_ratio = {key: {s: v[0] / v[1] for s, v in m[("flash",) + key].items()} for key in ((hd, c) for hd in (64, 128) for c in (True, False))}
    curves = {}
    for hd in (64, 128):
        for causal in (True, False):
            fwd = fa3.get(("H100 80GB SXM5", "Triton", hd, causal))
            if fwd:
                curves[(hd, causal)] = {s: (f, f / interp(fa2_ratio[(hd, causal)], s)) for s, f in fwd.items()}
    lines += table("hopper.triton", "Triton FlashAttention on H100: FA3 paper forward; backward = forward / FA2's measured fwd/bwd ratio",
                   "Shah et al. 2024, FlashAttention-3, H100 forward figure, 'Triton' bars (tools/published/kernels/attention_fa3_paper.csv)",
                   curves)
    fb_h100 = published(FA2, "fwd_bwd")
    curves = {}
    for hd in (64, 128):
        for causal in (True, False):
            c = fb_h100.get(("H100 80GB SXM5", "FlashAttention", hd, causal))
            if c:
                pts = {}
                for s, t in c.items():
                    r = interp(fa2_ratio[(hd, causal)], s)
                    fwd = t * (1 + 2.5 * r) / 3.5
                    pts[s] = (fwd, fwd / r)
                curves[(hd, causal)] = pts
    lines += table("hopper.fa1", "FlashAttention v1 on H100: FA2 paper forward+backward, split by FA2's measured H200 fwd/bwd ratio",
                   "Dao 2023, FlashAttention-2, H100 forward+backward figure (tools/published/kernels/attention_fa2_paper.csv)",
                   curves)
    # A100: FA2 paper forward+backward, split with FA2's measured H200 forward/backward ratio
    fb = published(FA2, "fwd_bwd")
    ratio = {key: {s: v[0] / v[1] for s, v in m[("flash",) + key].items()} for key in ((hd, c) for hd in (64, 128) for c in (True, False))}
    for paper, kernel, comment in (("FlashAttention-2", "fa2", "FlashAttention-2"),
                                   ("FlashAttention", "fa1", "FlashAttention v1"),
                                   # the paper's "Triton" bars are OpenAI's triton.ops.flash_attention (MLIR
                                   # Triton, 2023): flash-attention benchmarks/benchmark_flash_attention.py
                                   # (60499ab) line 17 "from triton.ops.flash_attention import attention as
                                   # attention_triton". NOT flash-attn's flash_attn_triton.py (llm-foundry's
                                   # attn_impl "triton"), whose speed no transcribed source measures.
                                   ("FlashAttention Triton", "triton", "Triton FlashAttention (OpenAI's triton.ops.flash_attention, MLIR Triton 2023; not flash-attn's flash_attn_triton)"),
                                   ("xformers", "xformers", "xFormers memory-efficient attention")):
        curves = {}
        for hd in (64, 128):
            for causal in (True, False):
                c = fb.get(("A100 80GB SXM4", paper, hd, causal))
                if not c:
                    continue
                pts = {}
                for s, t in c.items():
                    r = interp(ratio[(hd, causal)], s)
                    fwd = t * (1 + 2.5 * r) / 3.5  # 3.5F/t = F/fwd + 2.5F/bwd with bwd = fwd/r
                    pts[s] = (fwd, fwd / r)
                curves[(hd, causal)] = pts
        lines += table(f"ampere.{kernel}", f"{comment}: FA2 paper A100 forward+backward, split by FA2's measured H200 fwd/bwd ratio",
                       "Dao 2023, FlashAttention-2, A100 80GB forward+backward figure (tools/published/kernels/attention_fa2_paper.csv)",
                       curves)
    # cuDNN's fused attention on Ampere (cuDNN 8.9+) runs FlashAttention-2's algorithm: no
    # separate A100 measurement is transcribed, so it takes FA2's curve (an assumption)
    start = lines.index("[ampere.fa2]")
    end = lines.index("", start)
    lines += ["[ampere.cudnn]", "# cuDNN fused attention on A100: FlashAttention-2's curve (assumed; no measurement transcribed)"]
    lines += [x for x in lines[start + 2:end]] + [""]
    lines += blackwell()
    lines += blackwell_ultra()
    text = "\n".join(lines)
    import tomllib
    tomllib.loads(text)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
