"""The published runs of tools/published/*.csv as reference cases (tools/reference_sources.py):
the shipped reference file is exactly what the builder writes, a handful of cases carry the
layout their CSV row publishes (checked against numbers copied here by hand from the CSVs),
and every source has exactly one calibration row. Nothing here simulates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simtrain.analysis.validation import REFERENCE_PATH, case_scenario, load_reference
from simtrain.scenario.layout import make_layout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_reference  # noqa: E402
import reference_sources  # noqa: E402

CALIBRATION = ROOT.parent / "shared" / "calibration"
if not CALIBRATION.is_dir():
    CALIBRATION = Path("/work/shared/calibration")


@pytest.fixture(scope="module")
def cases() -> dict:
    return {c.name: c for c in load_reference()}


@pytest.mark.skipif(not CALIBRATION.is_dir(), reason="calibration CSVs not present")
def test_build_is_deterministic_and_matches_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "reference.toml"
    out.write_text(build_reference.build(CALIBRATION))
    assert out.read_text() == REFERENCE_PATH.read_text(), "re-run python tools/build_reference.py"
    assert build_reference.build(CALIBRATION) == out.read_text()


# (case, CSV row, GPUs, (tp, pp, cp, dp), micro-batch, accumulation, global batch, seq_len,
#  (layers, hidden, heads, kv heads, ffn, vocab)), copied by hand from the CSV rows;
#  accumulation None where the source does not publish it
HAND_COPIED = [
    # mosaicml_llmfoundry_mpt.csv row 96: | 7b | 2048 | 8 | a100_80gb | ... | 6 | 2 | 96 | ...
    ("mpt-7b-a100-80g-8gpu-s2048-mb6", "mosaicml_llmfoundry_mpt.csv row 96", 8, (1, 1, 1, 8), 6, 2, 96, 2048,
     (32, 4096, 32, 32, 16384, 50368)),
    # mosaicml_llmfoundry_mpt.csv row 1: | 70b | 2048 | 512 | h100_80gb | ... | 8 | 1 | 4096 | ...
    ("mpt-70b-h100-512gpu-s2048-mb8-ls", "mosaicml_llmfoundry_mpt.csv row 1", 512, (1, 1, 1, 512), 8, 1, 4096, 2048,
     (80, 8192, 64, 64, 32768, 50368)),
    # torchtitan_perf.csv row 30: Llama3 70b on 256 H100s with FSDP=32, TP=8, local batch size 16
    ("titan-llama3-70b-h100-256gpu-tp8-fullac-compile", "torchtitan_perf.csv row 30", 256, (8, 1, 1, 32), 16, 1, 512,
     8192, (80, 8192, 64, 8, 28672, 128256)),
    # korthikanti2022_selective_recompute.csv row 5: 530B, TP 8, PP 35, 280 GPUs, batch 280, micro-batch 1
    ("korthikanti-530b-280gpu-sp-selective", "korthikanti2022_selective_recompute.csv row 5", 280, (8, 35, 1, 1), 1,
     280, 280, 2048, (105, 20480, 128, 128, 81920, 51200)),
    # megatron_lm_readme_h100_2024.csv row 9: 462B | 144 | 18432 | 112 | 8 | 16 | 48 | 6144 | 3072
    ("megatron-h100-gpt-462b-6144gpu", "megatron_lm_readme_h100_2024.csv row 9", 6144, (8, 16, 1, 48), 1, None, 3072,
     4096, (112, 18432, 144, 144, 73728, 131072)),
    # megascale_2024.csv row 13: | 6144 | MegaScale | 3072 | 23.66 | ... (TP 8, PP 8; 128 heads)
    ("megascale-175b-3072gpu-megascale", "megascale_2024.csv row 13", 3072, (8, 8, 1, 48), 1, None, 6144, 2048,
     (96, 12288, 128, 128, 49152, 51200)),
    # flashattention_gpt3_a100.csv row 17: GPT3-2.7B, 1M tokens per batch, micro-batch 4, 20 heads
    ("flash-gpt3-2.7b-s2048-fa1-readme", "flashattention_gpt3_a100.csv row 17", 8, (1, 1, 1, 8), 4, 16, 512, 2048,
     (32, 2560, 20, 20, 10240, 50264)),
    # aleph_alpha_layouts_2023.csv row 100: trial 132178, 64 GPUs, micro-batch 1, TP 1, PP 1; 4M tokens
    ("aa-13b-2k-64gpu-tp1-pp1-mb1-fa2rms", "aleph_alpha_layouts_2023.csv row 100", 64, (1, 1, 1, 64), 1, 32, 2048,
     2048, (40, 5120, 40, 40, 13824, 128000)),
    # single_points_2021_2023.csv row 2: BLOOM, TP=4 PP=12 DP=8 MBS=2, GBS=2048
    ("bloom-176b-384gpu-iter85376", "single_points_2021_2023.csv row 2", 384, (4, 12, 1, 8), 2, 128, 2048, 2048,
     (70, 14336, 112, 112, 57344, 250880)),
    # single_points_2021_2023.csv row 7: GPT-NeoX-20B, TP 2, PP 4, micro-batch 4, accumulation 32
    ("gpt-neox-20b-96gpu", "single_points_2021_2023.csv row 7", 96, (2, 4, 1, 12), 4, 32, 1536, 2048,
     (44, 6144, 64, 64, 24576, 50432)),
    # megatron_core_moe_mixtral_h100.csv row 1: | Mixtral 8x7B(Dropless) | 32K | ... | 64 | 4096 | 1 | 8 | 4 | 8 | 1 | 256 |
    ("mcore-mixtral-8x7b-64gpu-dropless", "megatron_core_moe_mixtral_h100.csv row 1", 64, (1, 4, 1, 16), 1, 16, 256,
     4096, (32, 4096, 32, 8, 14336, 32000)),
    # megatron_core_moe_mixtral_h100.csv row 4: [Mixtral-8x22B]=" 2 8 8 1 7 1 256 56 ... 16 ...", Llama 2 tokenizer
    ("mcore-mixtral-8x22b-128gpu-balanced", "megatron_core_moe_mixtral_h100.csv row 4", 128, (2, 8, 1, 8), 1, 32, 256,
     4096, (56, 6144, 48, 8, 16384, 32000)),
    # nemotron4_reports_2024.csv row 1: 96 768 0.57 34.3 384 200 0.8 (TP 8; micro-batch not published)
    ("nemotron4-15b-report-768gpu", "nemotron4_reports_2024.csv row 1", 768, (8, 1, 1, 96), 1, None, 384, 4096,
     (32, 6144, 48, 8, 24576, 256000)),
    # nemotron4_reports_2024.csv row 6: | $64$ | $6144$ | $8.0$ | $41.0\%$ | $2304$ | $7600$ | (TP 8, PP 12)
    ("nemotron4-340b-report-6144gpu", "nemotron4_reports_2024.csv row 6", 6144, (8, 12, 1, 64), 1, None, 2304, 4096,
     (96, 18432, 96, 8, 73728, 256000)),
    # nvidia_dgxc_nemotron4_340b_2411.csv row 1: Nemotron4 340b 24.11 BF16 (TP=8, PP=8, MBS=1, GA=16, VP=12), 128x (GBS=32)
    ("dgxc-nemotron4-340b-128gpu-bf16", "nvidia_dgxc_nemotron4_340b_2411.csv row 1", 128, (8, 8, 1, 2), 1, 16, 32, 4096,
     (96, 18432, 96, 8, 73728, 256000)),
    # nvidia_dgxc_nemotron4_2504.csv row 8: | 15b | BF16/FP8 | 2048 | 4096 | 32 | 2 | 1 | 1 | NA | 1024| NA | 2 | 8192 | 4 |
    ("dgxc2504-nemotron4-15b-2048gpu-bf16", "nvidia_dgxc_nemotron4_2504.csv row 8", 2048, (2, 1, 1, 1024), 2, 4, 8192,
     4096, (32, 6144, 48, 8, 24576, 256000)),
    # nemo_megatron_bridge_perf_summary.csv row 244: | LLAMA3.1_405B | 128 | FP8-CS (FP8-MX) | 64 | 1 | 8192 | 0 | 4 | 8 | 2 | 8 | 1 | 32 |
    ("mbridge-llama3.1-405b-b200-128gpu-gbs64", "nemo_megatron_bridge_perf_summary.csv row 244", 128, (4, 8, 2, 2), 1, 32,
     64, 8192, (126, 16384, 128, 8, 53248, 128256)),
    # nemo_megatron_bridge_perf_summary.csv row 233: | LLAMA3_8B | 8 | FP8-CS (FP8-MX) | 128 | 2 | 8192 | 0 | 1 | 1 | 1 | n/a | 1 | 8 |
    ("mbridge-llama3-8b-gb200-8gpu-gbs128", "nemo_megatron_bridge_perf_summary.csv row 233", 8, (1, 1, 1, 8), 2, 8, 128,
     8192, (32, 4096, 32, 8, 14336, 128256)),
]


@pytest.mark.parametrize("name,row,gpus,layout,mb,accum,batch,seq,shape", HAND_COPIED, ids=[c[0] for c in HAND_COPIED])
def test_inline_scenarios_carry_the_published_layout(cases, name, row, gpus, layout, mb, accum, batch, seq, shape) -> None:
    case = cases[name]
    assert case.calibration == f"published/{row}" and case.basis == "step" and not case.scenario
    s = case_scenario(case)
    p, t, m = s.parallel, s.training, s.model
    assert (p.tp, p.pp, p.cp, p.dp) == layout
    assert s.cluster.gpus == gpus == p.tp * p.pp * p.cp * p.dp
    assert (p.micro_batch, t.global_batch, t.seq_len) == (mb, batch, seq)
    if accum is not None:
        assert mb * accum * p.dp == batch
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.num_key_value_heads,
            m.intermediate_size, m.vocab_size) == shape
    assert make_layout(s).world == gpus


def test_stack_choices_per_row(cases) -> None:
    # Aleph Alpha's kernel variants, torchtitan's compile, FlashAttention v1, BLOOM's partition
    rms = case_scenario(cases["aa-13b-2k-64gpu-tp1-pp1-mb1-fa2rms"])
    assert rms.stack.name == "aleph-alpha-scaling" and rms.stack.norm == "fused" and rms.parallel.attention_kernel == "fa2"
    torch = next(c for c in cases.values() if c.name.startswith("aa-") and c.name.endswith("-torch"))
    assert not case_scenario(torch).parallel.flash_attention and case_scenario(torch).stack.softmax == "unfused"
    compiled = case_scenario(cases["titan-llama3-8b-h100-8gpu-sacop-compile"])
    eager = case_scenario(cases["titan-llama3-8b-h100-8gpu-sacop"])
    assert (compiled.stack.norm, compiled.stack.activation, eager.stack.norm) == ("fused", "fused", "unfused")
    # the complex rotary stays eager under compile (Inductor falls back on complex ops)
    assert compiled.stack.rope == eager.stack.rope == "complex"
    # DTensor's cat copies around sequence-dim TP collectives: vanilla TP only
    tp = "titan-llama3-8b-h100-64gpu-tp8-sacop-compile"
    assert case_scenario(cases[tp]).stack.tp_shard_dim_copies
    assert not case_scenario(cases[tp + "-asynctp"]).stack.tp_shard_dim_copies
    assert case_scenario(cases[tp + "-asynctp"]).stack.async_tp_reduce and not case_scenario(cases[tp]).stack.async_tp_reduce
    assert case_scenario(cases["flash-gpt3-1.3b-s2048-fa1"]).parallel.attention_kernel == "fa1"
    bloom = case_scenario(cases["bloom-176b-384gpu-iter85376"])
    assert (bloom.parallel.first_stage_layers, bloom.parallel.last_stage_layers) == (5, 5)
    assert bloom.model.position_embedding == "alibi" and bloom.stack.name == "megatron-deepspeed"
    # Megatron-LM's own launches keep its default unfused cross-entropy (--cross-entropy-loss-
    # fusion is store_true at core_r0.8.0); NeMo's recipes, the megatron-core stack, fuse it
    for c in cases.values():
        if c.group == reference_sources.MEGATRON_H100_GROUP:
            sc = case_scenario(c)
            assert (sc.stack.name, sc.stack.cross_entropy) == ("megatron-core", "unfused"), c.name
            # overlapped pipeline communication needs the interleaved schedule at core_r0.8.0;
            # one layer per virtual stage: 119B's 92 / 4 = 23 and 462B's 112 / 16 = 7 layers
            # per stage are prime, so no other single --num-layers-per-virtual-pipeline-stage fits
            pp = sc.parallel.pp
            want = ("interleaved", sc.model.num_hidden_layers // pp) if pp > 1 else ("1f1b", 1)
            assert (sc.schedule.name, sc.parallel.vp) == want, c.name
    assert case_scenario(cases["megatron-h100-gpt-119b-1536gpu"]).parallel.vp == 23
    assert case_scenario(cases["megatron-h100-gpt-462b-6144gpu"]).parallel.vp == 7
    assert case_scenario(cases["nemo-gpt3-175b-128"]).stack.cross_entropy == "fused"


def test_out_of_memory_rows_are_memory_claims(cases) -> None:
    # aleph_alpha_layouts_2023.csv row 1: trial 132852, 'OOM Error', 32 GPUs, micro-batch 8, TP 1, PP 1, SP 1
    c = cases["aa-13b-2k-32gpu-tp1-pp1-mb8-fa2rms-sp"]
    assert c.expect == "out-of-memory" and c.step_time_s is None and c.calibration.endswith("csv row 1")
    claims = [c for c in cases.values() if c.group.startswith("Aleph Alpha") and c.expect == "out-of-memory"]
    assert len(claims) == 563  # SOURCES.md: 563 oom rows


def test_every_source_has_exactly_one_calibration_row() -> None:
    new = reference_sources.all_cases()
    groups = {c["group"] for c in new}
    assert len(groups) == len(reference_sources.CONVERTERS)
    for g in groups:
        flagged = [c["name"] for c in new if c["group"] == g and c.get("calibration_row")]
        assert len(flagged) == 1, (g, flagged)
        chosen = next(c for c in new if c["name"] == flagged[0])
        assert chosen.get("step_time_s") and not chosen.get("expect"), chosen["name"]


def test_every_case_is_judged_on_its_step_time_or_is_a_memory_claim() -> None:
    for c in reference_sources.all_cases():
        assert c["basis"] == "step"
        assert (c.get("step_time_s") or 0) > 0 or c.get("expect") == "out-of-memory", c["name"]
        if "step_time_s" in c and "derived" in c["note"].split(":")[0]:
            assert c["note"].startswith("derived: "), c["name"]
        sched = c["scenario"]["schedule"]["name"]
        if c["name"].endswith("-overlap-on"):  # NVIDIA's A/B of the expert-parallel overlap
            assert sched == "interleaved-ep-overlap", c["name"]
            continue
        assert sched == ("interleaved" if c["scenario"]["parallel"]["vp"] > 1 else "1f1b"), c["name"]


def test_extended_sweep_runs_only_when_selected(cases) -> None:
    from simtrain.analysis.validation import select

    every = tuple(cases.values())
    aleph = [c for c in every if c.group.startswith("Aleph Alpha")]
    assert aleph and all(c.extended for c in aleph) and not any(c.extended for c in every if c not in aleph)
    plain = select(every, None)
    assert len(plain) == len(every) - len(aleph) and not any(c.extended for c in plain)
    assert len(select(every, "Aleph Alpha")) == len(aleph) == 964


def test_megatron_moe_flops_counts_every_matmul() -> None:
    # Megatron-LM's num_floating_point_operations against a count by hand: 6 FLOPs per
    # active matmul weight per token (Q, O: h x h; K, V: h x 128g; top-2 of the SwiGLU
    # experts: 3 h x F each; the output layer h x V) plus 12*s*h per layer for QK^T and AV
    # (fwd + bwd), halved for the causal mask from Megatron-LM 8873b55d6a on.
    L, h, a, g, F, V, s, B = 32, 4096, 32, 8, 14336, 32000, 4096, 256
    weights = L * (2 * h * h + 2 * h * (h // a) * g + 2 * 3 * h * F) + h * V
    for half in (False, True):
        by_hand = B * s * (6 * weights + 12 * L * s * h * (0.5 if half else 1.0))
        got = reference_sources.megatron_moe_flops(L, h, a, g, F, 2, V, s, B, half)
        assert got == pytest.approx(by_hand, rel=1e-12)


def test_mixtral_cases_carry_the_moe_settings(cases) -> None:
    # megatron_core_moe_mixtral_h100.csv rows 1 and 3-6 (rows 2 and 7 superseded)
    mix = {n: case_scenario(c) for n, c in cases.items() if n.startswith("mcore-mixtral-")}
    assert sorted(mix) == ["mcore-mixtral-8x22b-128gpu-balanced", "mcore-mixtral-8x22b-128gpu-dropless",
                           "mcore-mixtral-8x22b-128gpu-fp8", "mcore-mixtral-8x22b-128gpu-tokendrop",
                           "mcore-mixtral-8x7b-64gpu-dropless"]
    for s in mix.values():
        assert s.parallel.ep == 8 and s.parallel.order == "tp-cp-dp-pp" and s.stack.name == "megatron-core"
        assert s.model.num_experts == 8 and s.model.num_experts_per_tok == 2
    assert (mix["mcore-mixtral-8x22b-128gpu-balanced"].parallel.vp, mix["mcore-mixtral-8x7b-64gpu-dropless"].parallel.vp) == (7, 8)
    assert mix["mcore-mixtral-8x22b-128gpu-fp8"].training.precision == "fp8"
    assert mix["mcore-mixtral-8x22b-128gpu-fp8"].training.fp8_recipe == "blockwise"  # PR=fp8: --fp8-recipe blockwise
    assert not mix["mcore-mixtral-8x22b-128gpu-fp8"].engine.overlap_tp_comm
    assert mix["mcore-mixtral-8x22b-128gpu-balanced"].engine.overlap_tp_comm
    assert mix["mcore-mixtral-8x22b-128gpu-tokendrop"].model.capacity_factor == 1.0
    assert mix["mcore-mixtral-8x22b-128gpu-balanced"].model.capacity_factor == 0.0
    # step derived from the printed TFLOP/s: 468 (8x7B, row 1) and 465 (8x22B, row 4)
    assert cases["mcore-mixtral-8x7b-64gpu-dropless"].step_time_s == pytest.approx(2.9032, abs=1e-4)
    assert cases["mcore-mixtral-8x22b-128gpu-balanced"].step_time_s == pytest.approx(4.2663, abs=1e-4)


def test_nemotron_cases_carry_the_published_settings(cases) -> None:
    # 340B report: "12-way pipeline parallelism with interleaving" (depth not published: 8 assumed)
    rep = case_scenario(cases["nemotron4-340b-report-1536gpu"])
    assert (rep.parallel.pp, rep.parallel.vp, rep.parallel.zero) == (12, 8, 1) and rep.schedule.name == "interleaved"
    assert rep.model.mlp == "plain" and not rep.model.tie_word_embeddings and rep.stack.name == "megatron-core"
    # DGX Cloud recipe: VP 12, selective recomputation, NVTE_FUSED_ATTN=0, grad_sync_dtype bf16, FP8 tables
    bf16 = case_scenario(cases["dgxc-nemotron4-340b-2048gpu-bf16"])
    fp8 = case_scenario(cases["dgxc-nemotron4-340b-2048gpu-fp8"])
    for s in (bf16, fp8):
        p = s.parallel
        assert (p.tp, p.pp, p.vp, p.dp, p.recompute, p.attention_kernel) == (8, 8, 12, 32, "selective", "fa2")
        assert s.training.grad_precision == "bf16" and s.training.global_batch == 512
    assert (bf16.training.precision, fp8.training.precision) == ("bf16", "fp8")

    # DGX Cloud 25.04: launch.sh passes -vp 12 for 340B (the README's layout table says NA)
    v2504 = case_scenario(cases["dgxc2504-nemotron4-340b-256gpu-fp8"])
    assert (v2504.parallel.pp, v2504.parallel.vp, v2504.parallel.dp, v2504.parallel.recompute) == (8, 12, 4, "none")
    assert (v2504.training.precision, v2504.training.grad_precision, v2504.parallel.attention_kernel) == ("fp8", "bf16", "cudnn")


MX_TWINS = ("mbridge-llama3-8b-b200-8gpu-gbs128-mxfp8", "mbridge-llama3-8b-gb200-8gpu-gbs128-mxfp8",
            "mbridge-llama3.1-405b-b200-128gpu-gbs64-mxfp8", "mbridge-llama3-8b-gb300-8gpu-gbs128-mxfp8")


def test_the_expert_overlap_ab_differs_in_the_overlap_only(cases) -> None:
    # NVIDIA's A/B (Megatron-Bridge PR #5094's skill text): the same recipe, overlap off and on
    # (24.7138 s and 20.9920 s measured), calibrated on the baseline
    off = cases["mbridge-qwen3-30b-a3b-h100-16gpu-bf16-overlap-off"]
    on = cases["mbridge-qwen3-30b-a3b-h100-16gpu-bf16-overlap-on"]
    assert (off.step_time_s, on.step_time_s) == (24.7138, 20.9920)
    assert off.calibration_row and not on.calibration_row and off.group == on.group
    a, b = case_scenario(off), case_scenario(on)
    assert (a.schedule.name, b.schedule.name) == ("1f1b", "interleaved-ep-overlap")
    assert a.parallel == b.parallel and a.training == b.training and a.stack == b.stack
    assert (a.parallel.ep, a.parallel.pp, a.training.precision, a.stack.ep_overlap_sms) == (16, 1, "bf16", 32)


def test_megatron_bridge_dense_cases_carry_the_recipe_settings(cases) -> None:
    # Megatron-Bridge's benchmark recipes at the containers' release tags (SOURCES.md): FP8
    # current scaling with fp8_param_gather, bf16 gradient reduction, distributed optimizer,
    # cuDNN attention (assumed), the 405B split counting embedding and loss as layers; the
    # MXFP8 twins of three Blackwell rows the same but for their recipe (v0.2.0's FP8_MX
    # presets are its FP8_CS ones)
    names = [n for n, c in cases.items() if c.group == reference_sources.MBRIDGE_GROUP]
    assert len(names) == 18 and sum(cases[n].calibration_row for n in names) == 1
    assert cases["mbridge-llama3-70b-h100-64gpu-gbs128"].calibration_row
    for n in names:
        s = case_scenario(cases[n])
        t, p = s.training, s.parallel
        recipe = "mxfp8" if n.endswith("-mxfp8") else "current"
        assert (t.precision, t.fp8_recipe, t.fp8_params, t.grad_precision) == ("fp8", recipe, True, "bf16")
        if n in MX_TWINS:  # 25.11's MXFP8 rows: their FP8-CS row's preset
            twin = case_scenario(cases[n[: -len("-mxfp8")]])
            assert (s.parallel, s.stack, s.cluster) == (twin.parallel, twin.stack, twin.cluster)
            assert s.cluster.topology in ("dgx-b200", "gb200-nvl72", "gb300-nvl72")
        assert (p.zero, p.recompute, p.attention_kernel, p.sequence_parallel) == (1, "none", "cudnn", p.tp > 1)
        assert s.stack.name == "megatron-core"
        big = s.model.num_hidden_layers == 126  # (126 + 2) / (pp x vp) per chunk, the ends one fewer
        ends = (128 // (p.pp * p.vp) - 1,) * 2 if big else (-1, -1)
        assert (p.first_stage_layers, p.last_stage_layers) == ends
        # CUDA graphs of the whole iteration only for the 8B rows (cuda_graph_impl local)
        assert s.stack.launch_us == (0.8 if s.model.num_hidden_layers == 32 else 7.0)
        # the recipe's userbuffers config (comm_overlap.py): ring-exchange fprop overlaps with a
        # one-SM margin for proj and fc2, bulk dgrad/wgrad SMs per model and GPU
        if p.tp > 1:
            assert s.stack.tp_overlap_sms[4:] == (0, 0, 0, 0, 1, 1)
    h70 = case_scenario(cases["mbridge-llama3-70b-h100-64gpu-gbs128"]).stack.tp_overlap_sms
    b405 = case_scenario(cases["mbridge-llama3.1-405b-b200-128gpu-gbs64"]).stack.tp_overlap_sms
    assert h70[:4] == (4, 24, 2, 4) and b405[:4] == (8, 32, 2, 8)
    gb = case_scenario(cases["mbridge-llama3.1-405b-gb200-256gpu-gbs1536"])
    assert gb.cluster.topology == "gb200-nvl72" and (gb.parallel.tp, gb.parallel.pp, gb.parallel.vp) == (4, 16, 4)
    mx = case_scenario(cases["mbridge-llama3.1-405b-gb200-256gpu-gbs1536-mxfp8"]).parallel  # its own preset: VP8
    assert (mx.tp, mx.pp, mx.vp, mx.first_stage_layers, mx.last_stage_layers) == (4, 16, 8, 0, 0)
    mx70 = case_scenario(cases["mbridge-llama3-70b-gb200-64gpu-gbs256-mxfp8"])
    assert (mx70.parallel.tp, mx70.parallel.pp, mx70.parallel.vp) == (2, 4, 5) and mx70.stack.tp_overlap_sms[:4] == (4, 24, 2, 4)
    assert case_scenario(cases["mbridge-llama3-8b-b200-8gpu-gbs128"]).cluster.topology == "dgx-b200"
    # GB300 NVL72 (Blackwell Ultra): 405B FP8-CS and MXFP8 (v0.5.0's V2 presets: TP4 PP8 VP4 and
    # TP2 PP8 CP2 VP4, the split counting embedding and loss: 4 per chunk, the ends 3), 70B MXFP8
    # (v0.4.2: TP1 PP4 VP5), 8B at the table's MBS 2 with CUDA graphs
    g3 = case_scenario(cases["mbridge-llama3.1-405b-gb300-256gpu-gbs1536"])
    assert g3.cluster.topology == "gb300-nvl72"
    assert (g3.parallel.tp, g3.parallel.pp, g3.parallel.vp, g3.parallel.cp, g3.parallel.first_stage_layers) == (4, 8, 4, 1, 3)
    assert g3.stack.tp_overlap_sms[:4] == (8, 32, 2, 8)
    m3 = case_scenario(cases["mbridge-llama3.1-405b-gb300-256gpu-gbs1536-mxfp8"]).parallel
    assert (m3.tp, m3.pp, m3.vp, m3.cp) == (2, 8, 4, 2)
    m70 = case_scenario(cases["mbridge-llama3-70b-gb300-64gpu-gbs256-mxfp8"]).parallel
    assert (m70.tp, m70.pp, m70.vp, m70.micro_batch) == (1, 4, 5, 1)
    e3 = case_scenario(cases["mbridge-llama3-8b-gb300-8gpu-gbs128"])
    assert (e3.parallel.micro_batch, e3.stack.launch_us) == (2, 0.8)
    # the CPU-offloading and Megatron-FSDP rows are left out (not modelled)
    assert not any(("gb200-64gpu" in n or "gb300-64gpu" in n) and not n.endswith("-mxfp8") for n in names)
