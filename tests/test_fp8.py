"""FP8 training as Transformer Engine runs it: FP8 GEMMs through the tile model at the FP8
peak, the cast-transpose and scaling kernels, FP8 weight memory, the MFU basis, refusals.
Truths from outside the code: datasheet peaks, Bekman's MAMF table (FP8 vs BF16 maximum
achievable matmul rate), hand-counted bytes."""

from __future__ import annotations

import json

import pytest

from simtrain.hardware.devices import CATALOG
from simtrain.scenario.config import load_scenario
from simtrain.scenario.models import require_model
from simtrain.scenario.stack import Stack
from simtrain.workload import fp8 as FP8
from simtrain.workload.compute import gemm_time
from simtrain.workload.ops import layer_ops
from tests.test_bad_files import assert_one_line_error

H100 = CATALOG["H100-SXM"]


def test_fp8_peaks_are_the_datasheets() -> None:
    # NVIDIA H100/H200 SXM datasheets: 1,979 TFLOP/s dense FP8 (3,958 with sparsity);
    # DGX B200: 72 PFLOP/s FP8 training per 8 GPUs with sparsity -> 4.5 PFLOP/s dense each
    assert CATALOG["H100-SXM"].peak_fp8_flops == 1979e12 == CATALOG["H200"].peak_fp8_flops
    assert CATALOG["B200"].peak_fp8_flops == 4.5e15
    for name in ("A100-40GB", "A100-80GB", "TPU-v4", "TPU-v5p"):
        assert CATALOG[name].peak_fp8_flops == 0.0


def test_large_fp8_gemm_speedup_is_mamfs() -> None:
    # Bekman's MAMF table, H100 SXM: fp8_e4m3fn 1,402.6 TFLOP/s against bf16 794.5: 1.765x.
    # The tile model at the FP8 constants gives the same ratio for a large square GEMM
    # within 5% (the FP8 K loop's doubled K_half costs a little at K = 8192).
    n = 8192
    bf16 = gemm_time(H100, n, n, n)
    fp8 = gemm_time(FP8.fp8_device(H100), n, n, n, elem_bytes=1)
    assert bf16 / fp8 == pytest.approx(1402.6 / 794.5, rel=0.05)
    # and FP8 stays under its own peak
    assert 2 * n**3 / fp8 < 0.75 * H100.peak_fp8_flops


def _llama8b_ops(precision: str, tp: int = 1):
    s = load_scenario("nemo-8b-8", [f"parallel.tp={tp}", "parallel.sequence_parallel=false", "training.seq_len=8192",
                                    "parallel.micro_batch=1", "parallel.cp=1"])
    return s, layer_ops(s.model, s.parallel, H100, Stack(), 8192, 0, precision)


def test_cast_kernels_by_hand_for_one_layer() -> None:
    s, ops = _llama8b_ops("fp8")
    m = s.model  # Llama 3 8B: h 4096, 32 heads x 128, 8 KV heads, FFN 14336
    t = 8192
    casts = {(o.name, o.phase): o.nbytes for o in ops if o.name.startswith("fp8 cast")}
    # forward: the GEMM input X (t x k); backward: the output gradient dY (t x n); 5.2 B each
    # (cast-transpose: read 2, write 1 + 1, x1.3), except QKV's input, which the norm kernel
    # writes in FP8 (Transformer Engine's LayerNormLinear): only its transpose (1 + 1, x1.3)
    qkv_n = (32 + 2 * 8) * 128
    assert casts[("fp8 cast qkv", "fwd")] == pytest.approx(2.6 * t * 4096)
    assert casts[("fp8 cast qkv", "bwd")] == pytest.approx(5.2 * t * qkv_n)
    assert casts[("fp8 cast out proj", "fwd")] == pytest.approx(5.2 * t * 4096)
    assert casts[("fp8 cast mlp up", "bwd")] == pytest.approx(5.2 * t * 2 * 14336)
    assert casts[("fp8 cast mlp down", "fwd")] == pytest.approx(5.2 * t * 14336)
    assert len(casts) == 8  # four linears, forward and backward
    assert m.hidden_size == 4096
    scale = [o for o in ops if o.name == "fp8 scale update"]
    assert [o.phase for o in scale] == ["fwd", "bwd"] and all(o.kernels == 1 for o in scale)


def test_only_the_linears_change_precision() -> None:
    _, bf = _llama8b_ops("bf16")
    _, f8 = _llama8b_ops("fp8")
    key = lambda o: (o.name, o.phase)  # noqa: E731
    bf_by, f8_by = {key(o): o for o in bf}, {key(o): o for o in f8}
    for k, o in bf_by.items():
        if o.kind == "gemm":  # every layer GEMM is a linear: faster, same FLOPs
            assert f8_by[k].flops == o.flops and f8_by[k].seconds < o.seconds
        else:  # attention core, norms, activations, residuals, rotary: untouched
            assert f8_by[k].seconds == o.seconds


def test_fp8_memory_by_hand() -> None:
    from simtrain.engine.plan import make_plan
    from simtrain.workload.memory import estimate

    ov = ["parallel.tp=2", "parallel.cp=1", "parallel.dp=4", "parallel.recompute=none"]
    bf = estimate(make_plan(load_scenario("nemo-8b-8", ov)))
    f8 = estimate(make_plan(load_scenario("nemo-8b-8", ov + ['training.precision="fp8"'])))
    a, b = bf.per_stage[0], f8.per_stage[0]
    # +2 B per linear weight (FP8 copy and its transpose): Llama 3 8B's linears per layer,
    # 4096 x 6144 (QKV) + 4096 x 4096 (out) + 4096 x 28672 (gate+up) + 14336 x 4096 (down)
    per_layer = 4096 * 6144 + 4096 * 4096 + 4096 * 28672 + 14336 * 4096
    assert b.parameters - a.parameters == pytest.approx(2 * 32 * per_layer / 2)
    # linear inputs kept in FP8: 1 B less per element of h (QKV in), q/tp (out in), h (up
    # in) and f/tp (down in) per token, per layer (SP off), per in-flight micro-batch (1F1B,
    # one stage: one at a time)
    s = load_scenario("nemo-8b-8", ov)
    tokens = s.parallel.micro_batch * s.training.seq_len
    saved = tokens * (2 * 4096 + 4096 / 2 + 14336 / 2) * 32 * a.peak_in_flight
    assert a.activations - b.activations == pytest.approx(saved)


def test_fp8_runs_faster_and_states_its_mfu_basis() -> None:
    from simtrain.analysis.run import simulate

    bf = simulate(load_scenario("nemo-8b-8"))
    f8 = simulate(load_scenario("nemo-8b-8", ['training.precision="fp8"']))
    assert f8.step_time_s < bf.step_time_s
    assert f8.mfu * f8.step_time_s == pytest.approx(bf.mfu * bf.step_time_s)  # same model FLOPs, same peak
    assert f8.extra["mfu_fp8_peak"] == pytest.approx(f8.mfu * 989 / 1979)
    assert "dense BF16 peak" in f8.extra["mfu_basis"] and "FP8" in f8.extra["mfu_basis"]
    assert "mfu_fp8_peak" not in bf.extra


@pytest.mark.parametrize("device", ["A100-80GB", "TPU-v4", "TPU-v5p"])
def test_fp8_on_a_device_without_fp8_is_one_line(device: str, capsys) -> None:
    topo = {"TPU-v4": "tpu-v4", "TPU-v5p": "tpu-v5p"}.get(device)
    argv = ["run", "nemo-8b-8", "--set", 'training.precision="fp8"', "--set", f'cluster.device="{device}"']
    if topo:
        argv += ["--set", f'cluster.topology="{topo}"']
    assert_one_line_error(argv, capsys, "training.precision = 'fp8'", f"{device} has no FP8 throughput in its device file", "bf16")


def test_megatron_fp8_format_flag() -> None:
    from simtrain.scenario.megatron_args import parse

    base = "--micro-batch-size 1 --seq-length 2048 --bf16"
    assert load_scenario("llama3-405b-8k", megatron=parse(f"{base} --fp8-format hybrid")).training.precision == "fp8"
    assert load_scenario("llama3-405b-8k", megatron=parse(base)).training.precision == "bf16"


# ---- FP8 recipes (training.fp8_recipe): delayed, current, blockwise, mxfp8 ----------------

def test_quantization_bytes_by_recipe_by_hand() -> None:
    # one quantization of an activation with both usages (rowwise + transposed columnwise):
    # delayed: read bf16 2 B, write 1 + 1 B; current: + one more 2 B read for the amax;
    # blockwise: + one FP32 scale per 128 elements in each direction (8/128 B); x1.3 each
    assert FP8.cast_bytes("delayed") == pytest.approx(4 * 1.3)
    assert FP8.cast_bytes("current") == pytest.approx(6 * 1.3)
    assert FP8.cast_bytes("blockwise") == pytest.approx((4 + 8 / 128) * 1.3)
    # a 128 x 128 weight block carries one scale per direction: 8 bytes per 16,384 elements
    assert FP8.WEIGHT_QUANT_MIN_BYTES["blockwise"] == pytest.approx(4 + 8 / 16384)


def _llama8b_recipe_ops(recipe: str):
    s = load_scenario("nemo-8b-8", ["parallel.tp=1", "parallel.sequence_parallel=false", "training.seq_len=8192",
                                    "parallel.micro_batch=1", "parallel.cp=1"])
    return layer_ops(s.model, s.parallel, H100, Stack(), 8192, 0, FP8.workload_precision("fp8", recipe))


def test_recipes_change_casts_scales_and_gemms() -> None:
    t, h = 8192, 4096
    by = {r: {(o.name, o.phase): o for o in _llama8b_recipe_ops(r)} for r in FP8.RECIPES}
    # the output projection's input quantization, 8,192 x 4,096 elements: bytes by hand,
    # kernels by recipe (current: an amax pass, then the cast-transpose)
    for r, nbytes, kernels in (("delayed", 5.2, 1), ("current", 7.8, 2), ("blockwise", (4 + 8 / 128) * 1.3, 1)):
        o = by[r][("fp8 cast out proj", "fwd")]
        assert o.nbytes == pytest.approx(nbytes * t * h) and o.kernels == kernels
    # the QKV input comes out of the norm (LayerNormLinear): delayed scaling's norm writes FP8,
    # then TE transposes it (1 + 1 B); current scaling's norm computes the amax on the way and
    # one cast-transpose follows (2 + 1 + 1 B); blockwise quantizes as before
    for r, nbytes in (("delayed", 2 * 1.3), ("current", 4 * 1.3), ("blockwise", (4 + 8 / 128) * 1.3)):
        o = by[r][("fp8 cast qkv", "fwd")]
        assert o.nbytes == pytest.approx(nbytes * t * h) and o.kernels == 1
    # only delayed scaling updates scales from an amax history
    assert ("fp8 scale update", "fwd") in by["delayed"]
    assert ("fp8 scale update", "fwd") not in by["current"] and ("fp8 scale update", "fwd") not in by["blockwise"]
    # current scaling runs the same per-tensor GEMMs; blockwise's are 1/0.81 as long at these
    # (compute-bound) shapes
    for k, o in by["delayed"].items():
        if o.kind == "gemm":
            assert by["current"][k].seconds == o.seconds
            oh = H100.kernel_overhead_s
            assert (by["blockwise"][k].seconds - oh) == pytest.approx((o.seconds - oh) / FP8.BLOCKWISE_GEMM_EFFICIENCY,
                                                                     rel=1e-6)


# Transformer Engine's GEMM profiling benchmark (benchmarks/gemm/benchmark_gemm.py, model
# config mode): the 12 GEMMs of one layer, M 15,872 tokens, hidden 4,096, FFN 16,384, QKV
# 12,288, as (M, K, N)
_M, _H, _F, _Q = 15872, 4096, 16384, 12288
TE_LAYER_GEMMS = ((_M, _H, _Q), (_M, _H, _H), (_M, _H, _F), (_M, _F, _H),  # fprop
                  (_M, _Q, _H), (_M, _H, _H), (_M, _F, _H), (_M, _H, _F),  # dgrad
                  (_H, _M, _Q), (_H, _M, _H), (_H, _M, _F), (_F, _M, _H))  # wgrad


def _te_benchmark_layer_ms(recipe: str, device: str = "H200") -> float:
    """The benchmark's layer (TE_LAYER_GEMMS), each GEMM a te.Linear forward under autocast:
    both inputs quantized, then the GEMM."""
    shapes = TE_LAYER_GEMMS
    dev = CATALOG[device]
    g = FP8.fp8_device(dev, recipe)
    return 1e3 * sum(gemm_time(g, mm, n, k, elem_bytes=1) + FP8.cast_seconds(dev, mm * k, recipe)
                     + FP8.cast_seconds(dev, k * n, recipe) for mm, k, n in shapes)


def test_recipe_costs_match_te_gemm_profiling_on_h200() -> None:
    # Transformer Engine's GEMM profiling tutorial (docs/examples/gemm_profiling/
    # gemm_profiling.rst @1609c890e), H200 NVL, autocast, per layer: DelayedScaling 18.978 ms,
    # CurrentScaling 20.285, Float8BlockScaling 22.882.
    d, c, b = (_te_benchmark_layer_ms(r) for r in ("delayed", "current", "blockwise"))
    # current over delayed: the extra amax read alone (nothing was derived from this number)
    assert c / d == pytest.approx(20.285 / 18.978, rel=0.03)
    # blockwise over delayed: BLOCKWISE_GEMM_EFFICIENCY was derived from these numbers with
    # the delayed quantization time; here through the tile model on the H200 SXM constants
    assert b / d == pytest.approx(22.882 / 18.978, rel=0.03)


def test_mxfp8_costs_match_te_gemm_profiling_on_blackwell() -> None:
    # The same tutorial on a B300 SXM6 AC (gemm_profiling.rst @d0067d0da), per layer under
    # autocast: FP8CurrentScaling 9.147 ms, MXFP8 8.984; pre-quantized (GEMMs only) 6.812 and
    # 7.161. MXFP8_GEMM_EFFICIENCY is the pre-quantized ratio; the autocast ratio then checks
    # the two recipes' quantization bytes on Blackwell (current 2 + 2 + 1 B with no transpose,
    # MXFP8 both usages 4 + 2/32 B): 0.982 published. On the B300's constants (its GEMMs from its
    # MAMF rows, nothing from this tutorial), within 2%, and the absolute per-layer times within
    # 3%; on the B200's (the same tensor cores) within 5%.
    c, x = (_te_benchmark_layer_ms(r, "B300") for r in ("current", "mxfp8"))
    assert FP8.MXFP8_GEMM_EFFICIENCY == pytest.approx(6.812 / 7.161, abs=5e-4)
    assert x / c == pytest.approx(8.984 / 9.147, rel=0.02)
    assert c == pytest.approx(9.147, rel=0.03) and x == pytest.approx(8.984, rel=0.03)
    cb, xb = (_te_benchmark_layer_ms(r, "B200") for r in ("current", "mxfp8"))
    assert cb == pytest.approx(9.147, rel=0.05) and xb == pytest.approx(8.984, rel=0.05)


def test_mxfp8_quantizes_both_usages_and_keeps_both_weights() -> None:
    # one E8M0 byte per 32 elements in each direction: 2 + 1 + 1 + 2/32 B per element, x1.3,
    # on Blackwell too (a second scaling along the other dimension, not a transpose it can skip)
    b = CATALOG["B200"]
    rate = b.hbm_bytes_per_s * b.memory_efficiency
    n = 1e9
    assert FP8.QUANT_MIN_BYTES["mxfp8"] == FP8.WEIGHT_QUANT_MIN_BYTES["mxfp8"] == 4 + 2 / 32
    assert FP8.cast_seconds(b, n, "mxfp8") - b.kernel_overhead_s == pytest.approx((4 + 2 / 32) * 1.3 * n / rate, rel=1e-9)
    # resident per weight: both FP8 scalings and their scales (per-tensor on Blackwell: 1 B)
    assert FP8.weight_bytes(b, "mxfp8") == 2 + 2 / 32 and FP8.weight_bytes(b, "current") == 1.0
    # with sequence parallelism the local shard is quantized (gathered quantized); no scale kernel
    casts = FP8.io_casts(b, "mxfp8", 8192, 4096, 4096, gather_in=4, gather_dy=1)
    assert [(ph, k) for ph, _, k, _, _ in casts] == [("fwd", 1), ("bwd", 1)]
    assert casts[0][3] == pytest.approx((4 + 2 / 32) * 1.3 * 8192 * 4096 / 4)
    assert FP8.scale_update_seconds(b, "mxfp8") == 0.0
    # with training.fp8_params the distributed optimizer gathers both scalings of a linear
    # weight (TE: columnwise data cannot be derived from rowwise), 2 + 2/32 B, not 1 B
    m = require_model("llama3-8b")
    lin = FP8.linear_params_per_layer(m)
    assert FP8.param_gather_bytes(m, lin, 1, 1, True, "mxfp8") == pytest.approx(2 + 2 / 32)
    assert FP8.param_gather_bytes(m, lin, 1, 1, True, "current") == pytest.approx(1.0)


def test_blockwise_gemm_below_deepgemm() -> None:
    # DeepGEMM (deepseek-ai/DeepGEMM README @55ab91f, H800, 1x128 x 128x128 scaling), the
    # fastest published Hopper blockwise kernels: 1,426 TFLOP/s at M 4,096, N 7,168, K 16,384,
    # 1.3x "our internally and carefully optimized implementation based on CUTLASS 3.6".
    # The simulated cuBLAS blockwise GEMM stays below DeepGEMM, within 15% of the CUTLASS one.
    dev = CATALOG["H800-SXM"]
    m, n, k = 4096, 7168, 16384
    tflops = 2 * m * n * k / gemm_time(FP8.fp8_device(dev, "blockwise"), m, n, k, elem_bytes=1) / 1e12
    assert tflops < 1426
    assert tflops == pytest.approx(1426 / 1.3, rel=0.15)


def test_fp8_recipe_refusals_are_one_line(capsys) -> None:
    base = ["run", "nemo-8b-8"]
    assert_one_line_error(base + ["--set", 'training.fp8_recipe="nvfp4"'], capsys,
                          "training.fp8_recipe = 'nvfp4'", "delayed, current, blockwise, mxfp8")
    assert_one_line_error(base + ["--set", 'training.precision="fp8"', "--set", 'training.fp8_recipe="mxfp8"'], capsys,
                          "training.fp8_recipe = 'mxfp8'", "Blackwell", "H100")
    assert_one_line_error(base + ["--set", 'training.fp8_recipe="blockwise"'], capsys,
                          "training.fp8_recipe = 'blockwise'", "training.precision = \"fp8\"")
    assert_one_line_error(base + ["--set", 'training.precision="fp8"', "--set", 'training.fp8_recipe="blockwise"',
                                  "--set", 'cluster.device="B200"'], capsys,
                          "training.fp8_recipe = 'blockwise'", "Hopper", "B200", "mxfp8")


def test_megatron_fp8_recipe_flag() -> None:
    from simtrain.scenario.megatron_args import parse

    base = "--micro-batch-size 1 --seq-length 2048 --bf16 --fp8-format e4m3"
    get = lambda extra: load_scenario("llama3-405b-8k", megatron=parse(f"{base} {extra}")).training  # noqa: E731
    assert get("--fp8-recipe blockwise").fp8_recipe == "blockwise"
    assert get("--fp8-recipe tensorwise").fp8_recipe == "current"
    assert get("").fp8_recipe == "delayed"  # Megatron-Core's default recipe
    assert get("--fp8-recipe mxfp8").fp8_recipe == "mxfp8"  # (refused at planning on Hopper)
    with pytest.raises(Exception, match="custom"):
        parse(f"{base} --fp8-recipe custom")


def test_reference_cases_name_their_recipe() -> None:
    from simtrain.analysis.validation.cases import case_scenario, load_reference

    cases = {c.name: c for c in load_reference()}
    recipe = lambda n: case_scenario(cases[n]).training.fp8_recipe  # noqa: E731
    assert recipe("mcore-mixtral-8x22b-128gpu-fp8") == "blockwise"  # ModelZoo: --fp8-recipe blockwise
    for n in ("nemo-moe-qwen3-30b-a3b-16", "nemo-moe-qwen3-235b-a22b-256", "nemo-moe-deepseek-v3-1024"):
        assert recipe(n) == "current"  # Megatron-Bridge fp8_cs presets
    assert recipe("nemo-fp8-70b-64") == "delayed"


def test_bf16_what_if_of_an_fp8_scenario_says_how(capsys) -> None:
    # an FP8 scenario names its recipe; --set training.precision=bf16 alone is refused with
    # one line, and the command-line fix that line names runs the BF16 step (slower)
    from simtrain.cli import main

    name = "nemo-moe-qwen3-30b-a3b-16"
    assert_one_line_error(["run", name, "--set", 'training.precision="bf16"'], capsys,
                          "training.fp8_recipe = 'current'", "--set training.fp8_recipe=delayed")
    assert main(["run", name, "--json"]) == 0
    fp8_step = json.loads(capsys.readouterr().out)["step_time_s"]
    assert main(["run", name, "--json", "--set", 'training.precision="bf16"', "--set", "training.fp8_recipe=delayed"]) == 0
    assert json.loads(capsys.readouterr().out)["step_time_s"] > fp8_step


def test_sequence_parallel_casts_run_on_the_shard_and_blackwell_skips_transposes() -> None:
    # Transformer Engine v2.9 (FP8.io_casts): with SP the QKV and MLP-up inputs are quantized
    # on the local sequence shard and all-gathered in FP8, the gathered tensor transposed in
    # the backward for the weight gradient (Hopper only); the output projection's and MLP
    # down's output gradients likewise; Blackwell's FP8 GEMMs take non-TN layouts: no
    # transposes. Llama 3 8B, TP4 with SP, 8,192 tokens, current scaling.
    s = load_scenario("nemo-8b-8", ["parallel.tp=4", "parallel.sequence_parallel=true", "training.seq_len=8192",
                                    "parallel.micro_batch=1", "parallel.cp=1", "parallel.dp=0"])
    t, h, tp = 8192, 4096, 4
    qkv_n = (32 + 2 * 8) * 128 // tp
    prec = FP8.workload_precision("fp8", "current")
    for dev, tn in ((H100, True), (CATALOG["B200"], False)):
        ops = layer_ops(s.model, s.parallel, dev, Stack(), 8192, 0, prec)
        cast = {}
        for o in ops:
            if o.name.startswith("fp8 cast"):
                cast[(o.name, o.phase)] = cast.get((o.name, o.phase), 0.0) + o.nbytes
        transpose = 2 * 1.3 if tn else 0.0
        # QKV: norm+amax fused, then a rowwise cast of the shard (2 + 1 B); backward: the
        # gathered input's transpose, and dY (local, t x n/TP) amax + cast (+ transpose)
        assert cast[("fp8 cast qkv", "fwd")] == pytest.approx(3 * 1.3 * t / tp * h)
        assert cast[("fp8 cast qkv", "bwd")] == pytest.approx(transpose * t * h + (5 + tn) * 1.3 * t * qkv_n)
        # output projection: its local input (t x h/TP) amax + cast (+ transpose); its dY
        # quantized on the shard (t/TP x h, amax + cast) and transposed after the gather
        assert cast[("fp8 cast out proj", "fwd")] == pytest.approx((5 + tn) * 1.3 * t * h / tp)
        assert cast[("fp8 cast out proj", "bwd")] == pytest.approx(5 * 1.3 * t / tp * h + transpose * t * h)


def test_blackwell_quantizes_without_the_transposed_copy() -> None:
    # an activation's per-tensor quantization on B200 writes no transpose (TE
    # is_non_tn_fp8_gemm_supported): current scaling 2 + 2 + 1 B instead of + 1, x1.3;
    # weights likewise; blockwise unchanged (its own rowwise + columnwise kernel)
    b = CATALOG["B200"]
    rate = b.hbm_bytes_per_s * b.memory_efficiency
    n = 1e9
    for recipe, nbytes in (("current", 5), ("delayed", 3), ("blockwise", 4 + 8 / 128)):
        k = FP8.QUANT_KERNELS[recipe] * b.kernel_overhead_s
        assert FP8.cast_seconds(b, n, recipe) - k == pytest.approx(nbytes * 1.3 * n / rate, rel=1e-9)
    assert FP8.weight_cast_seconds(b, n, "delayed") - b.kernel_overhead_s == pytest.approx(3 * 1.3 * n / rate, rel=1e-9)


def test_blackwell_keeps_no_fp8_weight_transpose() -> None:
    # resident per FP8-linear weight: the FP8 copy and, on Hopper only, its transpose
    assert FP8.weight_bytes(H100) == 2.0 and FP8.weight_bytes(CATALOG["B200"]) == 1.0
    # NVIDIA's GB200 NVL72 run of Llama 3.1 405B (Megatron-Bridge, FP8 current scaling with
    # fp8_param_gather, TP4 PP16 VP4) ran, so the memory model must fit it in 186 GB
    from simtrain.analysis.validation import case_scenario, load_reference
    from simtrain.engine.plan import make_plan
    from simtrain.workload.memory import estimate

    case = next(c for c in load_reference() if c.name == "mbridge-llama3.1-405b-gb200-256gpu-gbs1536")
    assert estimate(make_plan(case_scenario(case))).fits_in_memory
