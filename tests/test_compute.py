"""The compute model against measurements (tools/kernels/, tools/published/kernels/) and
physical bounds."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest

from simtrain.hardware.devices import CATALOG
from simtrain.workload.compute import attention_time, gemm_efficiency, gemm_time, memory_time, op_time
from simtrain.workload.kernels import attention_efficiency

ROOT = Path(__file__).resolve().parent.parent
H200_RUN = ROOT / "tools" / "kernels" / "h200_2026-11-30_kernels.jsonl"


def _h200_rows(section):
    return [r for r in map(json.loads, H200_RUN.read_text().splitlines()) if r["section"] == section and "error" not in r]


def test_gemm_model_reproduces_the_measured_h200_gemms():
    # 328 aligned bf16 GEMMs of 50 us and more, measured on an H200 (tools/kernels/): the
    # fitted model stays within 7% mean absolute error, 22% for 95% of them, 40% worst case
    dev = dataclasses.replace(CATALOG["H200"], sustained_fraction=1.0)
    rows = [r for r in _h200_rows("gemm") if all(r[k] % 64 == 0 for k in "mnk") and r["seconds"] > 50e-6]
    assert len(rows) > 300
    errs = [gemm_time(dev, r["m"], r["n"], r["k"]) / r["seconds"] - 1 for r in rows]
    assert sum(map(abs, errs)) / len(errs) < 0.07
    assert sorted(map(abs, errs))[int(0.95 * len(errs))] < 0.22
    assert max(map(abs, errs)) < 0.40


def test_misaligned_gemms_run_at_the_measured_fraction():
    # GEMMs with a dimension not a multiple of 8: 100-140 TFLOP/s measured on the H200
    dev = dataclasses.replace(CATALOG["H200"], sustained_fraction=1.0)
    rows = [r for r in _h200_rows("gemm") if any(r[k] % 8 for k in "mnk") and r["seconds"] > 100e-6]
    ratio = sorted(gemm_time(dev, r["m"], r["n"], r["k"]) / r["seconds"] for r in rows)
    assert 0.8 < ratio[len(ratio) // 2] < 1.25


def test_a100_large_gemm_matches_mamf_table():
    dev = dataclasses.replace(CATALOG["A100-80GB"], sustained_fraction=1.0)  # isolated benchmark
    n = 8192
    assert 2 * n**3 / gemm_time(dev, n, n, n) / 1e12 == pytest.approx(267.9, rel=0.01)


@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (8192, 128, 8192), (64, 8192, 8192), (8192, 8192, 64)])
def test_small_or_skinny_gemms_are_less_efficient(shape):
    dev = CATALOG["H100-SXM"]
    big = gemm_efficiency(dev, 8192, 8192, 8192)
    assert gemm_efficiency(dev, *shape) < big


def test_no_gemm_beats_peak_or_the_memory_roofline():
    dev = CATALOG["H100-SXM"]
    for m, n, k in [(1, 1, 1), (16, 16384, 16384), (8192, 8192, 8192), (333, 777, 4095)]:
        t = gemm_time(dev, m, n, k)
        assert 2 * m * n * k / t <= dev.peak_flops
        assert t >= 2 * (m * k + k * n + m * n) / dev.hbm_bytes_per_s


def test_memory_bound_ops_follow_bandwidth():
    dev = CATALOG["H100-SXM"]
    gb = 1e9
    assert memory_time(dev, 2 * gb, kernels=0) == pytest.approx(2 * memory_time(dev, gb, kernels=0))


@pytest.mark.parametrize("op,fused,elements_key,seconds_key", [
    ("rmsnorm", False, "hidden", "rmsnorm_unfused_hf"),
    ("rmsnorm", True, "hidden", "rmsnorm_torch"),
    ("layernorm", True, "hidden", "layernorm_torch_fused"),
    ("swiglu", False, "ffn", "swiglu_eager"),
    ("gelu", True, "ffn", "gelu_tanh"),
])
def test_memory_bound_operators_reproduce_the_h200_measurement(op, fused, elements_key, seconds_key):
    # forward time of each operator at 8,192 tokens (hidden 4,096 and 8,192; FFN 14,336 and
    # 28,672) within 15% of the measured time (tolerance: the catalog keeps one value per
    # operator for both sizes)
    dev = CATALOG["H200"]
    rows = [r for r in _h200_rows("memory") if r["op"] == seconds_key]
    assert len(rows) == 2
    for r in rows:
        t, _ = op_time(dev, op, fused, r["tokens"] * r[elements_key], backward=False)
        assert t == pytest.approx(r["fwd_s"], rel=0.15)


def test_unfused_rmsnorm_costs_several_times_the_fused_kernel():
    # measured 455 us vs 62 us at 8192 x 4096 (7.3x); the model keeps the ratio within 10%
    dev = CATALOG["H200"]
    e = 8192 * 4096
    unfused, _ = op_time(dev, "rmsnorm", False, e, False)
    fused, _ = op_time(dev, "rmsnorm", True, e, False)
    assert unfused / fused == pytest.approx(455 / 62, rel=0.1)


def _fa2_paper_a100():
    path = ROOT / "tools" / "published" / "kernels" / "attention_fa2_paper.csv"
    return [r for r in csv.DictReader(open(path)) if r["gpu"].startswith("A100") and r["kernel"] == "FlashAttention-2"
            and r["tflops"].strip()]


def test_a100_flashattention2_matches_the_papers_forward_backward_figure():
    # FA2 paper (Dao 2023), A100 forward+backward TFLOP/s (16k tokens, hidden 2048): the
    # model's forward and backward times, added, reproduce every published bar within 3%
    dev = dataclasses.replace(CATALOG["A100-80GB"], sustained_fraction=1.0, kernel_overhead_s=0.0)
    rows = _fa2_paper_a100()
    assert len(rows) >= 20
    for r in rows:
        s, hd, causal = int(r["seq_len"]), int(r["head_dim"]), r["causal"] == "True"
        b, heads = 16384 // s, 2048 // hd
        f = 4.0 * b * heads * s * s * hd / (2 if causal else 1)
        kw = dict(kernel="fa2", seq=s, head_dim=hd, causal=causal)
        t = attention_time(dev, f, False, **kw) + attention_time(dev, 2.5 * f, True, **kw)
        assert 3.5 * f / t / 1e12 == pytest.approx(float(r["tflops"]), rel=0.03), r["quoted"]


def test_attention_gets_faster_with_sequence_length_and_newer_kernels():
    # measured on the H200 (FA2, cuDNN) and in the FA3 paper: efficiency rises with the
    # sequence and FA3 > cuDNN > FA2 at 8K, causal, head dim 128
    eff = {k: attention_efficiency("hopper", k, 128, True, 8192, False) for k in ("fa2", "cudnn", "fa3")}
    assert eff["fa2"] < eff["cudnn"] < eff["fa3"] < 1
    # FA3 paper forward at 16K: FA3 616, FA2 335 TFLOP/s (of 989); our FA2 measurement 323
    assert eff["fa3"] * 989 == pytest.approx(602, rel=0.01)
    short = attention_efficiency("hopper", "fa2", 128, True, 1024, False)
    assert short < 0.75 * attention_efficiency("hopper", "fa2", 128, True, 16384, False)


def test_small_attention_grids_lose_idle_sms():
    # 8 heads x 8 query blocks = 64 thread blocks on 132 SMs: half the SMs idle
    dev = CATALOG["H100-SXM"]
    kw = dict(kernel="fa2", seq=1024, head_dim=128, causal=True)
    full = attention_time(dev, 1e12, False, blocks=4 * 132, **kw) - dev.kernel_overhead_s
    small = attention_time(dev, 1e12, False, blocks=64, **kw) - dev.kernel_overhead_s
    assert small / full == pytest.approx(132 / 64, rel=1e-9)


def test_unavailable_attention_kernels_are_refused():
    from simtrain.scenario.config import load_scenario
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.errors import SimtrainError

    with pytest.raises(SimtrainError, match="parallel.attention_kernel = 'fa3': no measured curve for A100-80GB; use one of"):
        make_plan(load_scenario("aleph-alpha-llama-13b-2k", ["parallel.attention_kernel=fa3"]))



def _cudnn_forward_tflops(dev, heads: int, seq: int = 8192) -> float:
    """TFLOP/s of one causal cuDNN attention forward (batch 1, `heads` heads of 128, `seq`
    tokens) on `dev`, its fixed kernel overhead taken out."""
    f = 4.0 * heads * seq * seq * 128 / 2
    t = attention_time(dev, f, False, kernel="cudnn", seq=seq, head_dim=128, causal=True, blocks=heads * 64)
    return f / (t - dev.kernel_overhead_s) / 1e12

def test_blackwell_attention_follows_nvidias_published_cudnn_numbers():
    # NVIDIA cudnn-frontend's SDPA training benchmark (tools/published/kernels/
    # attention_blackwell_cudnn_frontend.csv): B200, cuDNN 9.13.1, causal, 128 query / 8 KV
    # heads of 128, 8K tokens: forward 1,384.2 and backward 994.9 TFLOP/s (numbers copied
    # here by hand from the CSV). On a GB200 (2.5 PF peak) the same share of the peak.
    from simtrain.scenario.config import load_scenario
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.errors import SimtrainError

    b200, gb200 = CATALOG["B200"], CATALOG["GB200"]
    assert attention_efficiency("blackwell", "cudnn", 128, True, 8192, False) * 2250 == pytest.approx(1384.2, rel=1e-3)
    assert attention_efficiency("blackwell", "cudnn", 128, True, 8192, True) * 2250 == pytest.approx(994.9, rel=1e-3)
    assert _cudnn_forward_tflops(b200, 128) == pytest.approx(1384.2, rel=1e-3)
    assert _cudnn_forward_tflops(gb200, 128) / _cudnn_forward_tflops(b200, 128) == pytest.approx(2.5 / 2.25, rel=1e-9)
    # backward below Hopper's share of its peak at 8K (cuDNN on H200: 486 of 989)
    assert attention_efficiency("blackwell", "cudnn", 128, True, 8192, True) < attention_efficiency(
        "hopper", "cudnn", 128, True, 8192, True)
    # FlashAttention-3 is a Hopper kernel: refused on Blackwell, with the kernels that have curves
    with pytest.raises(SimtrainError, match="parallel.attention_kernel = 'fa3': no measured curve for GB200; use one of cudnn, fa2"):
        make_plan(load_scenario("llama3-405b-8k-gb200", ["parallel.attention_kernel=fa3"]))


def test_blackwell_ultra_attention_follows_nvidias_gb300_cudnn_results():
    # NVIDIA cudnn-frontend's SDPA training benchmark on GB300 (tools/published/kernels/
    # attention_blackwell_cudnn_frontend.csv; results/llama3.1/gb300, cuDNN 9.22.0): causal, 64
    # query / 8 KV heads of 128, 8K tokens: forward 1,856 and backward 1,435 TFLOP/s (copied here
    # by hand from the CSV); a B300 (2.25 PF) takes the same share of its peak. Its doubled SFU
    # exponent rate: the forward 1.18x GB200's 1,574 at the same cuDNN (results/llama3.1/gb200)
    from simtrain.scenario.config import load_scenario
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.errors import SimtrainError

    g3, b3 = CATALOG["GB300"], CATALOG["B300"]
    assert attention_efficiency("blackwell_ultra", "cudnn", 128, True, 8192, False) * 2500 == pytest.approx(1856, rel=1e-3)
    assert attention_efficiency("blackwell_ultra", "cudnn", 128, True, 8192, True) * 2500 == pytest.approx(1435, rel=1e-3)
    assert attention_efficiency("blackwell_ultra", "cudnn", 128, False, 16384, False) * 2500 == pytest.approx(2014, rel=1e-3)
    assert _cudnn_forward_tflops(g3, 64) == pytest.approx(1856, rel=1e-3)
    assert _cudnn_forward_tflops(g3, 64) / _cudnn_forward_tflops(b3, 64) == pytest.approx(2.5 / 2.25, rel=1e-9)
    # FlashAttention-2 there: B200's measured curve at GB200's share of peak times the
    # GB300/GB200 ratio of Azure's flash-attention benchmark (399.7 / 373.9); FA3, a Hopper
    # kernel, is refused
    assert attention_efficiency("blackwell_ultra", "fa2", 128, True, 8192, True) * 2500 == pytest.approx(
        attention_efficiency("blackwell", "fa2", 128, True, 8192, True) * 2500 * 399.7 / 373.9, rel=3e-3)
    with pytest.raises(SimtrainError, match="parallel.attention_kernel = 'fa3': no measured curve for GB300; use one of cudnn, fa2"):
        make_plan(load_scenario("llama3-405b-8k-gb200", ['cluster.topology="gb300-nvl72"', "parallel.attention_kernel=fa3"]))


def test_flash_attention_2_on_gb200_and_gb300_matches_azures_benchmark():
    # Azure's AI-benchmarking-guide runs flash-attention's benchmark_flash_attention.py
    # (causal, head dim 128, batch 2, 8K tokens, 16 heads; fwd + bwd at 3.5x the causal-halved
    # forward FLOPs): GB200 373.9, GB300 399.7 TFLOP/s. GB200 is a check nothing was fitted on
    # (its curve is B200's flash-attn 2.7.4 measurement at the same share of peak); GB300's
    # curve takes the ratio of the two, so it follows.
    from simtrain.workload.compute import attention_time

    b, s, h, d = 2, 8192, 16, 128
    fwd = 4 * b * s * s * h * d / 2
    for name, azure in (("GB200", 373.9), ("GB300", 399.7)):
        dev = CATALOG[name]
        t = attention_time(dev, fwd, False, "fa2", s, d, True) + attention_time(dev, 2.5 * fwd, True, "fa2", s, d, True)
        assert 3.5 * fwd / t / 1e12 == pytest.approx(azure, rel=0.03)


def test_a_kernel_measured_under_one_mask_takes_that_curve_for_the_other():
    # flash-attn 2.7.4 on B200 is published causal only (NVIDIA's cudnn-frontend results):
    # non-causal takes that curve (400 TFLOP/s forward at 8K), not the device's constant
    # fallback (0.35 of 2,250 = 788, twice what FA2 reaches there)
    causal = attention_efficiency("blackwell", "fa2", 128, True, 8192, False)
    assert causal * 2250 == pytest.approx(400, abs=1)
    assert attention_efficiency("blackwell", "fa2", 128, False, 8192, False) == causal
    # a family without tables still has none (the device constants apply)
    assert attention_efficiency("tpu", "fa2", 128, True, 8192, False) is None
