"""Selective recomputation by module (Megatron-Core's --recompute-modules), the MoE memory
rules that go with FP8 and DeepSeek-V3's bf16 optimizer moments, and Megatron-Core's
expert-parallel all-to-all overlap schedule: each against a hand count."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

import simtrain.schedule as S
from simtrain.engine.plan import make_plan
from simtrain.hardware.devices import get_device
from simtrain.scenario.config import ParallelConfig, load_scenario
from simtrain.scenario.models import require_model
from simtrain.scenario.stack import Stack
from simtrain.schedule.action import Action
from simtrain.schedule.validate import peak_in_flight, validate
from simtrain.workload.costs import layer_cost
from simtrain.workload.memory import estimate, layer_activation_bytes
from simtrain.workload.moe import moe_activation_bytes, routing
from simtrain.workload.ops import layer_ops
from tests.test_bad_files import assert_one_line_error

LLAMA = require_model("llama3-70b")  # h 8192, f 28672, 64 heads / 8 KV heads, no dropout
DSV3 = require_model("deepseek-v3")
SEQ = 4096


def _bytes(model, mods, **kw) -> float:
    return layer_activation_bytes(model, SEQ, 1, recompute="selective", recompute_modules=mods, **kw)


def test_layernorm_module_drops_the_two_norm_outputs() -> None:
    # the QKV and MLP-up GEMM inputs: 2 bytes x h each per token (no TP, no SP)
    saved = _bytes(LLAMA, ()) - _bytes(LLAMA, ("core_attn", "layernorm"))
    assert saved == pytest.approx(SEQ * 4 * 8192, rel=1e-12)
    # with TP4 and sequence parallelism they are sequence-sharded: /4
    kw = dict(tp=4, sequence_parallel=True)
    assert _bytes(LLAMA, (), **kw) - _bytes(LLAMA, ("layernorm",), **kw) == pytest.approx(SEQ * 4 * 8192 / 4, rel=1e-12)


def test_mlp_module_keeps_only_the_mlp_input() -> None:
    # SwiGLU: gate and up outputs and the down projection's input, 2 bytes x f each
    saved = _bytes(LLAMA, ()) - _bytes(LLAMA, ("core_attn", "mlp"))
    assert saved == pytest.approx(SEQ * 6 * 28672, rel=1e-12)


def test_default_selective_is_core_attention() -> None:
    assert _bytes(LLAMA, ()) == _bytes(LLAMA, ("core_attn",))
    # without FlashAttention the scores (2 bytes x s per head, no dropout) go
    full = layer_activation_bytes(LLAMA, SEQ, 1, recompute="none", flash_attention=False)
    sel = layer_activation_bytes(LLAMA, SEQ, 1, recompute="selective", flash_attention=False)
    assert full - sel == pytest.approx(SEQ * 2 * 64 * SEQ, rel=1e-12)


def test_mla_up_proj_module_by_hand() -> None:
    no_mlp = dataclasses.replace(DSV3, intermediate_size=0)
    saved = _bytes(no_mlp, ()) - _bytes(no_mlp, ("mla_up_proj",))
    # Q (128 x 192) and K (128 x 192) and V (128 x 128), 2 bytes each, and the two
    # bottleneck norms' outputs (1536 and 512)
    assert saved == pytest.approx(SEQ * 2 * (128 * 192 + 128 * 192 + 128 * 128 + 1536 + 512), rel=1e-12)


def test_recompute_time_and_flops_are_the_modules_forward_kernels() -> None:
    dev = get_device("H100-SXM")
    base = layer_cost(LLAMA, ParallelConfig(recompute="selective"), dev, SEQ, Stack())
    assert base.recompute == 0.0 and base.recompute_flops == 0.0  # FlashAttention: nothing to redo
    mlp = layer_cost(LLAMA, ParallelConfig(recompute="selective", recompute_modules=("mlp",)), dev, SEQ, Stack())
    # gate+up (2 x 2 t h f) and down (2 t f h) forward GEMMs
    assert mlp.recompute_flops == pytest.approx(6 * SEQ * 8192 * 28672, rel=1e-12)
    assert 0 < mlp.recompute < mlp.fwd[1]  # the MLP block's forward minus its norm and residual
    norms = layer_cost(LLAMA, ParallelConfig(recompute="selective", recompute_modules=("layernorm",)), dev, SEQ,
                       Stack())
    ops = {o.name: o.seconds for o in layer_ops(LLAMA, ParallelConfig(), dev, Stack(), SEQ) if o.phase == "fwd"}
    assert norms.recompute_flops == 0.0
    assert norms.recompute == pytest.approx(ops["input norm"] + ops["post-attn norm"], rel=1e-12)
    # each norm reads and writes t x h bf16 values at most at HBM speed
    assert norms.recompute >= 2 * 4 * SEQ * 8192 / dev.hbm_bytes_per_s


def test_moe_act_and_fp8_expert_inputs_by_hand() -> None:
    par = ParallelConfig(ep=8, recompute="selective")
    mix = require_model("mixtral-8x7b")
    _, _, per_expert = routing(mix, par, SEQ)
    copies = sum(per_expert)
    fe, h = 14336, 4096
    bf16 = moe_activation_bytes(mix, par, SEQ, 0.0, "selective")
    act = moe_activation_bytes(mix, dataclasses.replace(par, recompute_modules=("moe_act",)), SEQ, 0.0, "selective")
    assert bf16 - act == pytest.approx(copies * 2 * fe, rel=1e-12)  # the SwiGLU output, bf16
    fp8 = moe_activation_bytes(mix, par, SEQ, 0.0, "selective", fp8=True)
    assert bf16 - fp8 == pytest.approx(copies * (h + fe), rel=1e-12)  # both expert GEMM inputs at 1 byte


def test_bf16_moments_make_the_optimizer_state_8_bytes_per_parameter() -> None:
    s = load_scenario("mixtral-8x7b-64-h100")
    a = estimate(make_plan(s))
    b = estimate(make_plan(load_scenario(s, ['stack.optimizer_moments="bf16"'])))
    for x, y in zip(a.per_stage, b.per_stage):
        assert y.optimizer == pytest.approx(x.optimizer * 8 / 12, rel=1e-12)
        assert y.parameters == x.parameters and y.gradients == x.gradients


@pytest.mark.parametrize("p,v,m", [c for c in itertools.product(range(1, 6), range(1, 4), [4, 6, 8, 12])
                                   if (c[0] == 1 or c[1] > 1) and (c[1] == 1 or c[2] % c[0] == 0)])
def test_ep_overlap_schedule_pairs_steady_state_f_and_b(p: int, v: int, m: int) -> None:
    s, ref = S.build("interleaved-ep-overlap", p, v, m), S.build("interleaved", p, v, m)
    validate(s)
    if p == v == 1:  # no pipelining: Megatron-Core's combined_1f1b_schedule_for_no_pipelining
        acts = s.actions[0]
        assert acts[0] == Action(0, "F", 0) and acts[-1] == Action(0, "B", m - 1)
        assert [(acts[i], acts[i + 1]) for _, i in sorted(s.overlapped)] == [
            (Action(0, "F", k + 1), Action(0, "B", k)) for k in range(m - 1)]
        assert peak_in_flight(s) == {0: 1}  # the pair in lockstep: B frees a layer as F stores one
        return
    if v == 1:
        assert s.actions == ref.actions  # the 1F1B order, paired where it can be
    else:  # Megatron-Core's warm-up under the overlap: one forward more per rank
        from simtrain.schedule.interleaved import flexible_interleaved, warmup_forwards

        assert s.actions == {r: tuple(a) for r, a in flexible_interleaved(p, m, v, p, extra_warmup=1).items()}
        for r in range(p):
            warm = min(warmup_forwards(p, r, m, v, p) + 1, v * m)
            assert [a.kind for a in s.actions[r][:warm]] == ["F"] * warm
    # a pair holds one chunk, not two: never more than interleaved's peak, and the same where
    # the extra warm-up forward is one more chunk held (v > 1 with a steady state, m > p)
    got, base = peak_in_flight(s), peak_in_flight(ref)
    assert all(got[r] <= base[r] for r in range(p))
    if v > 1 and m > p:
        assert got == base
    for r, i in s.overlapped:
        a, b = s.actions[r][i], s.actions[r][i + 1]
        assert (a.kind, b.kind) == ("F", "B") and a.microbatch != b.microbatch
    # every F immediately followed by a B of another micro-batch is paired (steady state)
    expected = {(r, i) for r, acts in s.actions.items() for i in range(len(acts) - 1)
                if acts[i].kind == "F" and acts[i + 1].kind == "B" and acts[i].microbatch != acts[i + 1].microbatch}
    # pairs do not chain: a pair's B cannot open the next pair
    assert s.overlapped <= expected and all((r, i + 1) not in s.overlapped for r, i in s.overlapped)


def test_ep_overlap_with_a_pipeline_needs_virtual_stages_as_megatron_core_does(capsys) -> None:
    # Megatron-Core's TransformerConfig: "If enabling EP A2A overlap, virtual_pipeline_model_
    # parallel_size must be specified when pipeline_model_parallel_size > 1"
    assert S.check("interleaved-ep-overlap", 4, 1, 8) == (
        'schedule "interleaved-ep-overlap" needs virtual stages with a pipeline (Megatron-Core\'s expert-parallel '
        "overlap), but parallel.pp = 4 and parallel.vp = 1: set parallel.vp > 1, or parallel.pp = 1")
    assert S.check("interleaved-ep-overlap", 1, 1, 8) is None and S.check("interleaved-ep-overlap", 4, 2, 8) is None
    assert_one_line_error(["run", "mixtral-8x7b-64-h100", "--set", "parallel.vp=1",
                           "--set", 'schedule.name="interleaved-ep-overlap"'], capsys, "needs virtual stages with a pipeline",
                          "parallel.pp = 4 and parallel.vp = 1")


def test_ep_overlap_without_pipelining_hides_the_exchanges_behind_the_other_micro_batch() -> None:
    from simtrain.analysis.run import simulate

    # Qwen3 30B-A3B on 16 H100s, PP1 EP16 (NVIDIA's A/B of the overlap on this shape:
    # 24.71 -> 20.99 s, Megatron-Bridge skills/nemo-mbridge-perf-expert-parallel-overlap).
    # Without it every dispatch and combine is exposed; with it, only the first forward's and
    # the last backward's (which run alone) and what outlasts the other micro-batch's compute.
    bf16 = ['training.precision="bf16"', 'training.fp8_recipe="delayed"']
    plain = simulate(load_scenario("nemo-moe-qwen3-30b-a3b-16", bf16))
    over = simulate(load_scenario("nemo-moe-qwen3-30b-a3b-16", bf16 + ['schedule.name="interleaved-ep-overlap"']))
    assert plain.breakdown["ep"] > 0.1 * plain.step_time_s
    assert over.breakdown["ep"] < 0.1 * plain.breakdown["ep"]
    # the compute is the same work: overlapping only removes exposed exchange time
    assert over.step_time_s == pytest.approx(plain.step_time_s - plain.breakdown["ep"] + over.breakdown["ep"], rel=0.02)


def test_ep_overlap_hides_expert_all_to_alls() -> None:
    from simtrain.analysis.run import simulate

    s = load_scenario("mixtral-8x7b-64-h100")
    plain = simulate(s)
    over = simulate(load_scenario(s, ['schedule.name="interleaved-ep-overlap"']))
    assert over.breakdown["ep"] < 0.5 * plain.breakdown["ep"]
    assert over.step_time_s < plain.step_time_s


@pytest.mark.parametrize("sets,words", [
    (['parallel.recompute_modules=["mlp"]'], 'applies to recompute = "selective" only'),
    (['parallel.recompute="selective"', 'parallel.recompute_modules=["mlpp"]'], "'mlpp' is not a valid choice"),
    (['parallel.recompute="selective"', 'parallel.recompute_modules=["mla_up_proj"]'], "mla_up_proj needs multi-head latent attention"),
])
def test_bad_recompute_modules_are_one_line(capsys, sets: list[str], words: str) -> None:
    argv = ["run", "nemo-8b-8"]
    for x in sets:
        argv += ["--set", x]
    assert_one_line_error(argv, capsys, words)


# ---------------------------------------------------------------- TP-overlap SMs (userbuffers)


def test_overlapped_gemms_run_on_the_sms_the_communication_leaves() -> None:
    # NeMo's Llama 3 70B config: proj_fprop pipelined on 24 of 132 SMs, fc2_fprop 16,
    # qkv_wgrad bulk 24; ring-exchange overlaps (copy engines) take none
    dev = get_device("H100-SXM")
    sms = (4, 24, 2, 4, 0, 0, 0, 0, 24, 16)
    par = ParallelConfig(tp=4, sequence_parallel=True)
    base = {(o.name, o.phase): o.seconds for o in layer_ops(LLAMA, par, dev, Stack(), SEQ)}
    ub = {(o.name, o.phase): o.seconds for o in layer_ops(LLAMA, par, dev, Stack(tp_overlap_sms=sms), SEQ)}
    assert dev.sms == 132
    for key, n in {("out proj", "fwd"): 24, ("mlp down", "fwd"): 16, ("qkv", "wgrad"): 24, ("qkv", "bwd"): 4,
                   ("mlp up", "bwd"): 2, ("mlp up", "wgrad"): 4}.items():
        assert ub[key] == pytest.approx(base[key] * 132 / (132 - n), rel=1e-12), key
    for key in (("qkv", "fwd"), ("out proj", "bwd"), ("mlp up", "fwd"), ("mlp down", "bwd"), ("attention", "fwd")):
        assert ub[key] == base[key], key
    # no tensor parallelism: nothing to overlap
    one = ParallelConfig()
    assert [o.seconds for o in layer_ops(LLAMA, one, dev, Stack(tp_overlap_sms=sms), SEQ)] == \
        [o.seconds for o in layer_ops(LLAMA, one, dev, Stack(), SEQ)]


def test_tp_overlap_sms_only_with_overlapped_tp() -> None:
    s = load_scenario("nemo-70b-64")
    assert s.stack.tp_overlap_sms == (4, 24, 2, 4, 0, 0, 0, 0, 24, 16)
    assert load_scenario(s, ["engine.overlap_tp_comm=false"]).stack.tp_overlap_sms == ()


def test_bad_tp_overlap_sms_is_one_line(capsys) -> None:
    assert_one_line_error(["run", "nemo-70b-64", "--set", "stack.tp_overlap_sms=[1, 2]"], capsys,
                          "stack.tp_overlap_sms", "needs 10 SM counts")


def test_fp8_cached_swiglu_input_halves_the_gate_and_up_outputs() -> None:
    # DeepSeek-V3 §3.3.3: the experts' SwiGLU input (gate and up outputs, 2 x fe per copy)
    # kept in FP8, 1 byte instead of 2
    par = ParallelConfig(ep=8)
    mix = require_model("mixtral-8x7b")
    copies = sum(routing(mix, par, SEQ)[2])
    te = moe_activation_bytes(mix, par, SEQ, 0.0, "none", fp8=True)
    ds = moe_activation_bytes(mix, par, SEQ, 0.0, "none", fp8=True, fp8_act_input=True)
    assert te - ds == pytest.approx(copies * 2 * 14336, rel=1e-12)
    # not an FP8 run: nothing changes
    assert moe_activation_bytes(mix, par, SEQ, 0.0, "none", fp8_act_input=True) == moe_activation_bytes(mix, par, SEQ)


def test_selective_with_flash_attention_costs_exactly_what_none_costs() -> None:
    # the search and sweeps share one simulation between such layouts (sim_key): the costs
    # must be equal field for field, types included (0.0, not 0)
    dev = get_device("H100-SXM")
    none = layer_cost(LLAMA, ParallelConfig(tp=8), dev, SEQ, Stack())
    sel = layer_cost(LLAMA, ParallelConfig(tp=8, recompute="selective"), dev, SEQ, Stack())
    assert repr(none) == repr(sel)


def test_tp_overlap_sms_beyond_the_device_is_one_line(capsys) -> None:
    # a GEMM left with no SMs cannot run: refused, not silently ignored
    assert_one_line_error(["run", "nemo-70b-64", "--set", "stack.tp_overlap_sms=[200, 0, 0, 0, 0, 0, 0, 0, 0, 0]"],
                          capsys, "stack.tp_overlap_sms", "has 132", "fewer than 132")
