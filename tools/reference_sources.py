"""Reference cases from the published runs transcribed in tools/published/*.csv (each row
quoting its source; caveats per file in tools/published/SOURCES.md).

One converter per source, each returning a list of case dicts that tools/build_reference.py
writes into simtrain/data/reference.toml with the scenario inline ([cases."NAME".scenario]).
A case reproduces the run as published: model shape, cluster, software stack, layout,
batch and sequence length. What the source omits is the framework's documented default
where SOURCES.md gives one, else an assumption stated in the case's note; a run that cannot
be reproduced honestly is left out (listed, with the reason, in SOURCES.md, "Used by
simtrain validate"). Every case is judged on its step time (basis "step"): published, or
derived from the source's own throughput and FLOPs formula ("derived: ..." in the note).
Numbers are copied from the CSVs, never typed in; nothing here reads a simulation result.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

PUBLISHED = Path(__file__).resolve().parent / "published"
Case = dict[str, Any]


@lru_cache(maxsize=None)
def rows(file: str) -> tuple[dict[str, str], ...]:
    with open(PUBLISHED / file, newline="") as f:
        return tuple(csv.DictReader(f))


def numbered(file: str) -> list[tuple[int, dict[str, str]]]:
    """(1-based data row, row) pairs: the row numbers the cases cite."""
    return list(enumerate(rows(file), 1))


def quoted(row: dict[str, str]) -> dict[str, str]:
    """The quoted markdown table line as {column: cell} (header and line as transcribed)."""
    head = [c.strip() for c in row["quoted_header"].strip().strip("|").split("|")]
    cells = [c.strip() for c in row["quoted_line"].strip().strip("|").split("|")]
    return dict(zip(head, cells))


# --- model shapes (Hugging Face config.json names, as [model] takes them) ----------------

def gpt_model(layers: int, hidden: int, heads: int, vocab: int, seq: int, *, ffn: int = 0, tie: bool = True,
              bias: bool = True, dropout: float | None = None, position: str = "learned") -> dict[str, Any]:
    """GPT-2/3-style: plain GELU MLP (4h unless given), LayerNorm, learned positions."""
    m: dict[str, Any] = dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=ffn or 4 * hidden,
                             num_attention_heads=heads, num_key_value_heads=heads, vocab_size=vocab, mlp="plain",
                             bias=bias, position_embedding=position, norm="layernorm", tie_word_embeddings=tie)
    if position == "learned":
        m["max_position_embeddings"] = seq
    if dropout is not None:
        m["dropout"] = dropout
    return m


def llama_model(row: dict[str, str], vocab: int = 0) -> dict[str, Any]:
    """Llama-style from the row's shape columns: SwiGLU, RMSNorm, RoPE, no biases, untied."""
    return dict(num_hidden_layers=int(row["layers"]), hidden_size=int(row["hidden"]),
                intermediate_size=int(row["ffn_hidden"]), num_attention_heads=int(row["heads"]),
                num_key_value_heads=int(row["kv_heads"]), vocab_size=vocab or int(row["vocab"]), mlp="gated",
                bias=False, position_embedding="rope", norm="rmsnorm", tie_word_embeddings=False)


# --- scenario sections ---------------------------------------------------------------------

# GPU -> (topology, device override): A100-80GB and A100-40GB on DGX A100 (8 x HDR 200 Gb/s
# per node), H100 on DGX H100 (8 x NDR 400 Gb/s), H200 on DGX H200.
TOPOLOGY = {"A100-80GB": ("dgx-a100", ""), "A100-40GB": ("dgx-a100", "A100-40GB"),
            "H100": ("dgx-h100", ""), "H200": ("dgx-h200", ""),
            # DGX B200 (8 x B200, NVLink 5, 8 x NDR 400 Gb/s) and GB200 NVL72 racks (GB200's clocks)
            "B200": ("dgx-b200", ""), "GB200": ("gb200-nvl72", ""),
            # DGX B300 (8 x B300, 8 x ConnectX-8 800 Gb/s) and GB300 NVL72 racks (Blackwell Ultra)
            "B300": ("dgx-b300", ""), "GB300": ("gb300-nvl72", ""),
            # Meta's Grand Teton H100s (96 GB HBM2e, 500 W; 400 Gb/s RDMA per GPU as DGX H100)
            "H100-HBM2e": ("dgx-h100", "H100-SXM-HBM2e")}


def scenario(model: dict, gpu: str, gpus: int, stack: str, parallel: dict, training: dict,
             stack_values: dict | None = None, engine: dict | None = None) -> dict[str, Any]:
    topology, device = TOPOLOGY[gpu]
    cluster: dict[str, Any] = dict(topology=topology, gpus=gpus, stack=stack)
    if device:
        cluster["device"] = device
    par = dict(tp=1, pp=1, cp=1, dp=gpus, vp=1, sequence_parallel=False, recompute="none")
    par.update(parallel)
    assert par["tp"] * par["pp"] * par["cp"] * par["dp"] == gpus, (par, gpus)
    out: dict[str, Any] = dict(model=model, cluster=cluster, parallel=par,
                               training={"precision": "bf16", **training},
                               schedule=dict(name="interleaved" if par["vp"] > 1 else "1f1b"))
    if engine:
        out["engine"] = engine
    if stack_values:
        out["stack"] = stack_values
    return out


def case(name: str, group: str, file: str, row_no: int, row: dict[str, str], scen: dict, note: str,
         step: float | None = None, **extra: Any) -> Case:
    c: Case = dict(name=name, group=group, source=row["source"], calibration=f"published/{file} row {row_no}",
                   model=row["model"], basis="step")
    if step is not None:
        c["step_time_s"] = step
    c.update(extra)
    c["note"] = note
    c["scenario"] = scen
    return c


def num(text: str) -> float:
    return float(text.strip())


# --- MosaicML llm-foundry (PyTorch FSDP) -------------------------------------------------

MPT_FILE = "mosaicml_llmfoundry_mpt.csv"
MPT_GROUP = "MosaicML llm-foundry (PyTorch FSDP)"
# The row the calibrated reading fits on: MPT-7B, 2k tokens, one node of A100-80GB (Oct 2023
# table, no recomputation): a mid-sized model at the sweep's typical sequence length, in the
# table whose rows all simulate (the H100 tables' default Triton kernel has no Hopper curve).
MPT_CALIBRATION = "mpt-7b-a100-80g-8gpu-s2048-mb6"


def _mpt_gpu(row: dict[str, str]) -> tuple[str, str]:
    if row["gpu"].startswith("H100"):
        return "H100", "h100"
    return (row["gpu"], "a100-80g") if row["gpu"] == "A100-80GB" else (row["gpu"], "a100-40g")


def _mpt_attention(row: dict[str, str]) -> tuple[str, str]:
    """attn_impl per the scripts that produced each table (SOURCES.md; llm-foundry history):
    submit_benchmarks.py defaults to "triton" (May 2023 and Oct 2023 tables; sweep.sh passes
    no --attn_impl); the large-scale H100 table's sweep.py passes "flash" (FA2, the
    gpu-flash2 install) for 1b/3b/7b/70b and "triton" for 13b/30b."""
    large = "Large Scale" in row["source_location"]
    if large and row["model"] in ("mpt-1b", "mpt-3b", "mpt-7b", "mpt-70b"):
        return "fa2", "attn_impl flash (FA2) per the large-scale table's sweep.py"
    # attn_impl "triton" is llm-foundry's copy of flash-attn's flash_attn_triton.py, run on
    # triton_pre_mlir (llm-foundry's setup.py pins a pre-MLIR Triton fork, sm90 build included):
    # FlashAttention-1's algorithm with A100-era mma instructions, no Hopper wgmma/TMA. Its
    # docstring: "Overall Triton forward + backward is slightly slower than CUDA forward +
    # backward" (the CUDA version being FlashAttention-1), so the FA1 curves stand for it on
    # both GPUs. The Triton curves (FA2/FA3 papers' "Triton" bars) are OpenAI's later
    # MLIR-based kernel (flash-attention benchmarks/benchmark_flash_attention.py @60499ab
    # imports triton.ops.flash_attention), much faster on H100.
    # Other statements of its speed, none a measurement at these shapes: llm-foundry v0.3.0
    # TUTORIAL.md "In our experiance, `triton` is slightly faster than `flash`" (flash =
    # flash-attn 1.0.9, FA1, in v0.3.0's [gpu] extra); tridao in insuhan/hyper-attn PR #1
    # (2023-11-30): FA2's CUDA kernel "about 2x faster than the triton implementation", as
    # FA2 is ~2x FA1. All agree with FA1's speed overall, so FA1 stays. Open question (see
    # the validation's long-sequence rows): the docstring also says the Triton FORWARD is
    # faster than FA1's and its backward slower; the forward's work partition is FA2's (one
    # program per 128-query block over batch x heads x query blocks, one pass over K/V, only
    # the LSE stored), and FA1's head-dim-128 penalty (FA2 paper figure: FA1 hd128 ~15% below
    # hd64; OpenAI's Triton kernel shows none) may not apply. The per-pass split is unmeasured
    # (needs the pre-MLIR Triton fork on an A100/H100), so no curve is built from it.
    return "fa1", ("attn_impl triton (submit_benchmarks.py default): llm-foundry's "
                   "flash_attn_triton on pre-MLIR Triton, FA1's speed per its docstring")


def mpt_cases() -> list[Case]:
    out = []
    for n, r in numbered(MPT_FILE):
        if r["status"] != "ok" or r["precision"] not in ("bf16", "amp_bf16"):
            continue  # superseded re-measurements and FP8 rows are not cases
        q = quoted(r)
        gpu, tag = _mpt_gpu(r)
        gpus, seq, mb = int(r["num_gpus"]), int(r["seq_len"]), int(r["micro_batch"])
        hidden = int(r["hidden"])
        model = gpt_model(int(r["layers"]), hidden, int(r["heads"]), int(r["vocab"]), seq, dropout=0.0)
        kernel, why = _mpt_attention(r)
        shard = q["Sharding Strategy"]
        zero = 3 if shard == "FULL_SHARD" else 2  # SHARD_GRAD_OP = ZeRO-2 (SOURCES.md)
        # Gradient reduction dtype. Composer (v0.16.3 composer/trainer/mosaic_fsdp_utils.py,
        # get_mixed_precision) maps MP mode PURE to MixedPrecision(param_dtype, reduce_dtype,
        # buffer_dtype all = bf16) and DEFAULT to param_dtype = buffer_dtype = bf16 with
        # reduce_dtype left None; FSDP then reduces in param_dtype (torch.distributed.fsdp.api
        # MixedPrecision docstring: "If this is None but param_dtype is not None, then this takes
        # on the param_dtype value, still running gradient reduction in low precision"). Only FULL
        # (param_dtype None) reduces fp32. So PURE and DEFAULT both reduce gradients in bf16.
        low_precision_reduce = q["MP Mode"] in ("PURE", "DEFAULT")
        parallel = dict(micro_batch=mb, recompute="full" if r["recompute"] == "full" else "none", zero=zero,
                        flash_attention=True, attention_kernel=kernel)
        if zero == 3:
            parallel["reshard_after_forward"] = True
        training = dict(seq_len=seq, global_batch=int(r["global_batch_seqs"]),
                        grad_precision="bf16" if low_precision_reduce else "fp32")
        name = f"mpt-{r['model'][4:]}-{tag}-{gpus}gpu-s{seq}-mb{mb}"
        if "Large Scale" in r["source_location"]:
            name += "-ls"
        note = (f"derived: step = GlobalBatchSize (T) / Throughput (T/s) = {q['GlobalBatchSize (T)']} / "
                f"{q['Throughput (T/s)']} (the CSV's step_time_s). FSDP {shard}, MP mode {q['MP Mode']}, "
                f"activation checkpointing {q['Activation Checkpointing']}, grad accumulation {q['GradAccum']}; "
                f"{why}; MPT: learned positions, biases, tied embeddings, no dropout, low-precision LayerNorm")
        extra = {"calibration_row": True} if name == MPT_CALIBRATION else {}
        # attn_impl "flash" runs llm-foundry's flash_attn_fn, which unpads Q, K and V
        # (flash-attn bert_padding.unpad_input, with an all-ones key_padding_mask when none
        # is given) before flash_attn_varlen_func and pads the output back, every layer
        # (llmfoundry/models/layers/attention.py@5e85bd62d:268-289, 367-369); the Triton path
        # passes the padded tensors straight to its kernel
        stack_values = dict(attention_unpad=True) if kernel == "fa2" else None
        out.append(case(name, MPT_GROUP, MPT_FILE, n, r,
                        scenario(model, gpu, gpus, "llm-foundry", parallel, training, stack_values), note,
                        num(r["step_time_s"]), **extra))
    return out


# --- torchtitan (PyTorch FSDP2 / DTensor) --------------------------------------------------

TITAN_FILE = "torchtitan_perf.csv"
TITAN_GROUP = "torchtitan (PyTorch FSDP2)"
# Calibration row: Llama 2 13B on 64 A100s without activation checkpointing (data row 4):
# a mid-sized model, and the one row whose recomputation simtrain represents exactly.
TITAN_CALIBRATION_ROW = 4
# RMSNorm when not compiled: norm_type in the train_configs at the doc's commit (157a12c56:
# fused_rmsnorm for llama3_8b and llama2_13b, rmsnorm for the 70B models; 3faaa1a0d and
# 9dec370: rmsnorm).
TITAN_FUSED_RMSNORM = {("llama3-8b", "A100-80GB"), ("llama2-13b", "A100-80GB")}


def _titan_recompute(text: str) -> str | None:
    """full -> full; op-level selective AC -> op-selective; per-layer selective AC -> None."""
    if text.startswith("full"):
        return "full"
    if text == "none":
        return "none"
    if "layer" in text:
        return None  # every n-th block fully recomputed: no simtrain equivalent (skipped)
    return "op-selective"


def torchtitan_cases() -> list[Case]:
    out = []
    for n, r in numbered(TITAN_FILE):
        recompute = _titan_recompute(r["recompute"])
        if not r["precision"].startswith("bf16") or recompute is None:
            continue  # float8 rows; per-layer selective AC (rows 1 and 5, SOURCES.md)
        # every H100 row of torchtitan ran on Grand Teton's 96 GB HBM2e, 500 W H100s
        # (devices/H100-SXM-HBM2e.toml, from the benchmark file's "Hardware" section)
        gpu = r["gpu"] if r["gpu"].startswith("A100") else "H100-HBM2e" if "HBM2e" in r["gpu"] else "H100"
        gpus, tp = int(r["num_gpus"]), int(r["tp"])
        compiled = "torch.compile on" in r["notes"] or "torch.compile +" in r["notes"]
        async_tp = "Async TP tokens/sec' column" in r["notes"]
        fused_norm = compiled or (r["model"], gpu) in TITAN_FUSED_RMSNORM
        stack = dict(norm="fused" if fused_norm else "unfused")
        if compiled:  # per-block torch.compile fuses SwiGLU too; the complex rotary stays eager
            stack.update(activation="fused")  # (Inductor falls back on complex ops: stacks/torchtitan.toml)
            # and the sum of the separate projections' input gradients, a pointwise node of
            # the block's backward graph, into its neighbour (stacks/torchtitan.toml)
            stack.update(separate_projection_grads=False)
        # async TP (engine.overlap_tp_comm below): the stack drops DTensor's cat copies and adds
        # micro-pipeline TP's sum kernel by itself (stacks/torchtitan.toml)
        parallel = dict(tp=tp, pp=int(r["pp"]), cp=int(r["cp"]), dp=int(r["dp"]), micro_batch=int(r["micro_batch"]),
                        sequence_parallel=tp > 1, recompute=recompute, zero=3, reshard_after_forward=True,
                        flash_attention=True, attention_kernel="fa2")
        training = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]), grad_precision="fp32")
        engine = dict(overlap_tp_comm=async_tp) if tp > 1 else None
        model = r["model"].replace("llama3.1", "llama3")
        ac = {"full": "fullac", "op-selective": "sacop", "none": "noac"}[recompute]
        name = (f"titan-{model}-{gpu[:4].lower()}-{gpus}gpu" + (f"-tp{tp}" if tp > 1 else "") + f"-{ac}"
                + ("-compile" if compiled else "") + ("-asynctp" if async_tp else ""))
        note = ("derived: step = global_batch x seq_len / (tokens/s/GPU x GPUs) (the CSV's step_time_s). "
                + ("torch.compile per block; " if compiled else "eager (no torch.compile); ")
                + f"RMSNorm {'fused' if fused_norm else 'eager'}; "
                + ("op-level selective AC (every second matmul and the elementwise ops recomputed): "
                   "recompute op-selective; " if recompute == "op-selective" else "")
                + ("H100 here = Meta's HBM2e 96 GB, 500 W variant (devices/H100-SXM-HBM2e.toml: 2.4 TB/s, "
                   "peak between SXM and NVL as the benchmark file says, its midpoint); " if gpu == "H100-HBM2e" else "")
                + ("async TP (TP collectives overlapped); " if async_tp else "")
                + ("compile not stated for this row (the toml enables it): eager assumed; " if n == 9 else "")
                + "SDPA's FlashAttention-2 backend; FSDP2 bf16 parameters, fp32 gradient reduction")
        extra = {"calibration_row": True} if n == TITAN_CALIBRATION_ROW else {}
        out.append(case(name, TITAN_GROUP, TITAN_FILE, n, r,
                        scenario(llama_model(r), gpu, gpus, "torchtitan", parallel, training, stack, engine),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- Korthikanti et al. 2022 (Megatron-LM, sequence parallelism + selective recompute) ----

KORTHIKANTI_FILE = "korthikanti2022_selective_recompute.csv"
KORTHIKANTI_GROUP = "Megatron-LM 2022 (Korthikanti et al., selective recompute)"
# Calibration row: GPT 175B with sequence parallelism and selective recomputation on 64
# GPUs (data row 3): the mid-sized model of Table 5, in the configuration the paper proposes.
KORTHIKANTI_CALIBRATION_ROW = 3


def korthikanti_cases() -> list[Case]:
    out = []
    for n, r in numbered(KORTHIKANTI_FILE):
        if not r["global_batch_seqs"]:
            continue  # rows 9-10 (530B on 2,240 GPUs, abstract): batch and micro-batch not published
        present = r["recompute"].startswith("selective")
        gpus, seq = int(r["num_gpus"]), int(r["seq_len"])
        model = gpt_model(int(r["layers"]), int(r["hidden"]), int(r["heads"]), int(r["vocab"]), seq)
        parallel = dict(tp=int(r["tp"]), pp=int(r["pp"]), dp=int(r["dp"]), micro_batch=int(r["micro_batch"]),
                        sequence_parallel=present, recompute="selective" if present else "full")
        training = dict(seq_len=seq, global_batch=int(r["global_batch_seqs"]))
        size = r["model"][4:]
        name = f"korthikanti-{size}-{gpus}gpu-" + ("sp-selective" if present else "full-recompute")
        note = ("published Table 5 iteration time (via third-party notes). "
                + ("'present work': sequence parallelism + selective recomputation; " if present else
                   "baseline: full recomputation, no sequence parallelism; ")
                + "GPT-3-style shape of Table 3 (4h GELU MLP, learned positions, LayerNorm, vocab 51,200); "
                  "assumed: bf16 (sources say mixed 16-bit), no interleaving (one note says 3 virtual stages for "
                  "175B/530B, not verified), plain data parallelism (DP = 1 here)")
        extra = {"calibration_row": True} if n == KORTHIKANTI_CALIBRATION_ROW else {}
        out.append(case(name, KORTHIKANTI_GROUP, KORTHIKANTI_FILE, n, r,
                        scenario(model, "A100-80GB", gpus, "megatron-lm-2022", parallel, training),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- NVIDIA Megatron-LM README, H100 weak scaling (Megatron-Core r0.8.0) -------------------

MEGATRON_H100_FILE = "megatron_lm_readme_h100_2024.csv"
MEGATRON_H100_GROUP = "Megatron-LM README H100 2024 (Megatron-Core r0.8.0)"
# Calibration row: GPT 32B on 384 H100s, TP8 PP1 (data row 4): mid-sized, and without
# pipeline parallelism, so no assumed pipeline schedule enters the fit.
MEGATRON_H100_CALIBRATION_ROW = 4
# What Megatron-LM's own launch (not NeMo's recipes, which the megatron-core stack follows)
# leaves at its default: --cross-entropy-loss-fusion is a store_true flag, off unless given
# (megatron/training/arguments.py:1134 at core_r0.8.0), and the README's flag list for these
# runs names only the overlap flags. Unfused, language_module.py:37-40 runs
# tensor_parallel.vocab_parallel_cross_entropy: .float() of the logits, max, in-place
# subtract, exp and divide, a sum (cross_entropy.py, core_r0.8.0), and in the backward an
# in-place multiply and the cast back: ~38 B forward and ~14 B backward per logit before
# overheads, the eager cross-entropy the kernel table prices (simtrain.workload.kernels).
MEGATRON_R080_STACK = {"cross_entropy": "unfused"}
# The pipeline schedule of the PP > 1 rows. The README says the runs overlap "pipeline-
# parallel communication (enabled by default)": --overlap-p2p-communication, which
# core_r0.8.0 turns off unless the interleaved schedule runs (megatron/training/
# arguments.py:270-277, "Setting args.overlap_p2p_comm to False since non-interleaved
# schedule does not support overlapping p2p communication"). So the PP rows ran the
# interleaved schedule. Its depth is one flag, --num-layers-per-virtual-pipeline-stage, and
# only 1 divides every row's layers per stage (119B: 92 / 4 = 23 and 462B: 112 / 16 = 7 are
# prime), so one layer per virtual stage. The README's strong-scaling text agrees: 177B at a
# fixed 1,152 sequences from 96 to 4,608 H100s loses 47% -> 42% MFU; at TP8 PP6 (the weak-
# scaling 177B's) 4,608 GPUs leave 12 micro-batches per replica, a non-interleaved bubble of
# 5/17 = 29% (simulated: 52% -> 35% MFU), one layer per virtual stage 52% -> 48%.
MEGATRON_R080_LAYERS_PER_VIRTUAL_STAGE = 1


def megatron_model_flops(layers: int, hidden: int, vocab: int, seq: int, batch: int) -> float:
    """Megatron-LM training.py num_floating_point_operations (2024) for a GPT with a 4h MLP
    and multi-head attention: 72*B*s*L*h^2*(1 + s/(6h) + V/(12hL)) per iteration."""
    return 72 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden) + vocab / (12 * hidden * layers))


def megatron_h100_cases() -> list[Case]:
    out = []
    for n, r in numbered(MEGATRON_H100_FILE):
        if not r["tp"]:
            continue  # rows 10-11: strong-scaling endpoints, TP/PP not published
        layers, hidden, vocab, seq = int(r["layers"]), int(r["hidden"]), int(r["vocab"]), int(r["seq_len"])
        gpus, batch, tp = int(r["num_gpus"]), int(r["global_batch_seqs"]), int(r["tp"])
        flops = megatron_model_flops(layers, hidden, vocab, seq, batch)
        step = round(flops / (num(r["tflops_per_gpu"]) * 1e12 * gpus), 4)
        model = gpt_model(layers, hidden, int(r["heads"]), vocab, seq, tie=False)
        pp = int(r["pp"])
        vp = layers // pp // MEGATRON_R080_LAYERS_PER_VIRTUAL_STAGE if pp > 1 else 1
        parallel = dict(tp=tp, pp=pp, vp=vp, dp=int(r["dp"]), micro_batch=1, sequence_parallel=tp > 1,
                        recompute="none", zero=1)
        training = dict(seq_len=seq, global_batch=batch)
        name = f"megatron-h100-gpt-{r['model'][4:]}-{gpus}gpu"
        note = (f"derived: step = 72*B*s*L*h^2*(1 + s/6h + V/12hL) / (TFLOP/s x GPUs) = {flops:.4g} / "
                f"({r['tflops_per_gpu']}e12 x {gpus}) (Megatron-LM training.py's model FLOPs for a 4h MLP with "
                "multi-head attention). Shape: README table (layers, hidden, heads), vocab 131,072, seq 4,096; "
                "GPT-3-style 4h GELU MLP, learned positions, untied embeddings (the printed parameter counts "
                "need untied embeddings) assumed. --tp-comm-overlap implies sequence parallelism, "
                "--overlap-param-gather the distributed optimizer; the overlapped pipeline communication implies the "
                "interleaved schedule for PP > 1, one layer per virtual stage (the only depth every row's layers "
                "per stage divide by). Assumed (not published): micro-batch 1, no recomputation, bf16")
        extra = {"calibration_row": True} if n == MEGATRON_H100_CALIBRATION_ROW else {}
        out.append(case(name, MEGATRON_H100_GROUP, MEGATRON_H100_FILE, n, r,
                        scenario(model, "H100", gpus, "megatron-core", parallel, training, MEGATRON_R080_STACK),
                        note + "; Megatron-LM's default unfused cross-entropy (--cross-entropy-loss-fusion off)",
                        step, **extra))
    return out


# --- MegaScale (Jiang et al. 2024): Megatron-LM baseline and MegaScale, 175B on A100 ------

MEGASCALE_FILE = "megascale_2024.csv"
MEGASCALE_GROUP = "MegaScale 2024 (Megatron-LM and MegaScale, 175B)"
# Calibration row: the Megatron-LM baseline on 512 GPUs (data row 2): mid-scale of the
# small-batch sweep, and the system whose model computation simtrain reproduces (MegaScale's
# own rows change the block: parallel attention/MLP, sliding-window attention).
MEGASCALE_CALIBRATION_ROW = 2
MEGASCALE_VOCAB = 51200  # not published: GPT-3's vocabulary as Megatron pads it (assumed)


def megascale_cases() -> list[Case]:
    out = []
    for n, r in numbered(MEGASCALE_FILE):
        if not r["step_time_s"]:
            continue  # rows 17-22: 530B weak scaling, MFU only, batch not published
        ours = r["framework"].startswith("MegaScale")
        gpus, seq = int(r["num_gpus"]), int(r["seq_len"])
        model = gpt_model(int(r["layers"]), int(r["hidden"]), int(r["heads"]), MEGASCALE_VOCAB, seq)
        parallel = dict(tp=int(r["tp"]), pp=int(r["pp"]), dp=int(r["dp"]), vp=2, micro_batch=1,
                        sequence_parallel=True, recompute="selective", zero=2)
        training = dict(seq_len=seq, global_batch=int(r["global_batch_seqs"]))
        stack = "megascale" if ours else "megatron-lm-2022"
        name = f"megascale-175b-{gpus}gpu-" + ("megascale" if ours else "megatron")
        note = ("published Table 2 iteration time (via a third-party note). "
                + ("MegaScale's system (stacks/megascale.toml); its parallel transformer block (simulated serial), "
                   "sliding-window attention (window not in the transcription: full causal attention simulated) and "
                   "LAMB are not reproduced; "
                   if ours else "Megatron-LM baseline (commit 285068c8, 2023) with MegaScale's network tuning: "
                   "no FlashAttention, ZeRO-2-style sharding (paper), gradient reduction after the backward; ")
                + "175B of MegaScale Table 1 (128 heads). Assumed (not published): micro-batch 1, 2 virtual stages "
                  "per pipeline rank (interleaved 1F1B as the paper says, depth as Megatron's SC21 scripts used at "
                  "PP 8), sequence parallelism with selective recomputation, vocab 51,200, A100-80GB, bf16")
        extra = {"calibration_row": True} if n == MEGASCALE_CALIBRATION_ROW else {}
        base = {} if ours else dict(overlap_grad_reduce=False)
        out.append(case(name, MEGASCALE_GROUP, MEGASCALE_FILE, n, r,
                        scenario(model, "A100-80GB", gpus, stack, {**parallel, **base}, training),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- FlashAttention's GPT training on 8 A100s (FA2 paper Table 1; FA repo README) ---------

FLASH_FILE = "flashattention_gpt3_a100.csv"
FLASH_GROUP = "FlashAttention GPT training (8x A100)"
# Calibration row: GPT3-1.3B from the repo README (data row 16): the mid-sized model, with
# its batch, micro-batch and optimizer sharding from the published config, not assumed.
FLASH_CALIBRATION_ROW = 16
FLASH_KERNEL = {"none (standard attention)": None, "FlashAttention (v1)": "fa1", "FlashAttention-2": "fa2"}  # Table 1


def gpt2_params(layers: int, hidden: int, vocab: int, positions: int) -> int:
    """All parameters of flash-attn's GPT-2-style model (tied embeddings, learned positions,
    biases, two LayerNorms per block and a final one): what N in 6*s*N counts (assumed)."""
    block = 12 * hidden * hidden + 13 * hidden
    return layers * block + vocab * hidden + positions * hidden + 2 * hidden


def flashattention_cases() -> list[Case]:
    out = []
    for n, r in numbered(FLASH_FILE):
        if FLASH_KERNEL.get(r["attention_kernel"], "readme") is None:
            # rows 1, 4, 7, 10 ("without FlashAttention"): the baseline's micro-batch and
            # recomputation are not published, and the FlashAttention configs' micro-batches
            # cannot hold unfused attention's scores (at 8k not even one sequence fits
            # without recomputation): the run's configuration is unknown
            continue
        layers, hidden, vocab, seq = int(r["layers"]), int(r["hidden"]), int(r["vocab"]), int(r["seq_len"])
        readme = bool(r["step_time_s"])
        size = r["model"][5:]
        if readme:  # repo README: batch, micro-batch and ZeRO from the published configs
            heads, mb, batch, zero = int(r["heads"]), int(r["micro_batch"]), int(r["global_batch_seqs"]), int(r["zero_stage"])
            kernel, step = "fa1", num(r["step_time_s"])
            note = "derived: step = batch tokens / throughput per 8-GPU node (the CSV's step_time_s); "
        else:  # FA2 paper Table 1: batch and micro-batch from the repo's configs (SOURCES.md)
            heads = int(r["heads"]) if r["heads"] else (20 if seq == 2048 else 32)
            mb = 8 if (size == "1.3b" and seq == 2048) else 4  # gpu_mem >= 80 branch of each config
            batch, zero = (512 if seq == 2048 else 128), 1
            kernel = FLASH_KERNEL[r["attention_kernel"]]
            n_params = gpt2_params(layers, hidden, vocab, seq)
            flops = batch * (6 * seq * n_params + 12 * layers * hidden * seq * seq)
            step = round(flops / (num(r["tflops_per_gpu"]) * 1e12 * 8), 4)
            note = (f"derived: step = B*(6*s*N + 12*L*h*s^2) / (TFLOP/s x 8) with the paper's formula, N = {n_params:,} "
                    f"(all parameters, assumed) and B = {batch} (the repo config's global batch; the paper prints "
                    f"none); micro-batch {mb} from the config's >= 80 GB branch"
                    + (f"; heads {heads} as the repo's {'2k (head dim 128)' if seq == 2048 else '8k'} config "
                       "(not in the paper)" if not r["heads"] else "") + "; ")
        parallel = dict(micro_batch=mb, zero=zero, flash_attention=True, attention_kernel=kernel)
        # ZeroRedundancyOptimizer wraps torch AdamW (configs/optimizer/adamw-zero.yaml)
        stack = dict(optimizer="foreach") if zero else None
        model = gpt_model(layers, hidden, heads, vocab, seq, dropout=0.1)
        training = dict(seq_len=seq, global_batch=batch)
        name = f"flash-gpt3-{size}-s{seq}-{kernel}" + ("-readme" if readme else "")
        note += ("8 A100-80GB on NVLink, DDP" + (" + ZeRO-1 (torch AdamW)" if zero else " (Apex FusedAdam)")
                 + ", bf16, no recomputation; GPT-2-style model (dropout 0.1, tied embeddings, vocab padded to 50,264)")
        extra = {"calibration_row": True} if n == FLASH_CALIBRATION_ROW else {}
        out.append(case(name, FLASH_GROUP, FLASH_FILE, n, r,
                        scenario(model, "A100-80GB", 8, "flash-attn-train", parallel, training, stack),
                        note, step, **extra))
    return out


# --- Aleph Alpha layout study (Hagemann et al. 2023), per-trial results on A100-80GB ------

ALEPH_FILE = "aleph_alpha_layouts_2023.csv"
# Its 964 cases take most of a validation run's time (401 simulations at up to 256 GPUs and
# 2,048 micro-batches per step): they are `extended`, run when selected (--only "Aleph Alpha").
ALEPH_GROUP = "Aleph Alpha layout study 2023 (A100-80GB)"
# Calibration row: LLaMA 13B, 2k tokens, 64 GPUs, TP1 PP1 micro-batch 1, FlashAttention-2 with
# the fused RMSNorm kernel, no recomputation (trial 132178, data row 100): the study's headline
# layout (its Fig. 1 best), a mid-sized model with nothing beyond vocabulary and ZeRO assumed.
ALEPH_CALIBRATION_TRIAL = "132178"
# Not printed: the parameter counts implied by the sheets' two FLOP columns (14.0B, 33.8B,
# 66.9B) exceed LLaMA's by what an untied 128k-token vocabulary adds (13B: 128.2k, 65B:
# 128.3k, 30B: 125.3k tokens): 128,000 (Aleph Alpha's tokenizer size) is assumed.
ALEPH_VOCAB = 128000
# kernel column -> (parallel keys, stack values, name tag), as the study's kernel variants map
ALEPH_KERNELS: dict[str, tuple[dict, dict, str]] = {
    "FlashAttention-2 + FA2 fused RMSNorm kernel": (dict(flash_attention=True, attention_kernel="fa2"),
                                                     dict(norm="fused"), "fa2rms"),
    "FlashAttention-2": (dict(flash_attention=True, attention_kernel="fa2"), {}, "fa2"),
    "FlashAttention v1.0.8": (dict(flash_attention=True, attention_kernel="fa1"), {}, "fa1"),
    # only in OOM rows, where only the (kernel-independent) memory of fused attention matters
    "FlashAttention (version not stated)": (dict(flash_attention=True, attention_kernel="fa2"), {}, "fa"),
    "Megatron fused softmax kernel": (dict(flash_attention=False), {}, "megatron"),
    "torch (unfused softmax attention)": (dict(flash_attention=False), dict(softmax="unfused"), "torch"),
}


def aleph_alpha_cases() -> list[Case]:
    out, seen = [], set()
    for n, r in numbered(ALEPH_FILE):
        if r["status"] == "error":
            continue  # "Kernel not available" / "Other Error": no measurement, no claim
        trial = r["quoted_line"].split("|")[0].strip()
        size, seq, gpus = r["model"].split()[0][6:], int(r["seq_len"]), int(r["num_gpus"])
        tp, pp, mb = int(r["tp"]), int(r["pp"]), int(r["micro_batch"])
        par_kernel, stack, tag = ALEPH_KERNELS[r["attention_kernel"]]
        full = r["recompute"].startswith("full")
        parallel = dict(tp=tp, pp=pp, dp=int(r["dp"]), micro_batch=mb, sequence_parallel=r["sp"] == "1",
                        recompute="full" if full else "none", zero=1, **par_kernel)
        layers = int(r["layers"])
        if layers % pp:  # 30B's 60 layers over 8 or 16 stages: the study's split is not published
            mid = -(-layers // pp)
            parallel["first_stage_layers"] = parallel["last_stage_layers"] = (layers - (pp - 2) * mid) // 2
            assert 2 * parallel["first_stage_layers"] + (pp - 2) * mid == layers, (layers, pp)
        # bf16 gradients, as scenarios/aleph-alpha-llama-13b-2k.toml argues from the published
        # TP1 PP1 layouts (13B states fit an 80 GB A100 only below 6 bytes per parameter)
        training = dict(seq_len=seq, global_batch=int(r["global_batch_seqs"]), grad_precision="bf16")
        name = (f"aa-{size}-{seq // 1024}k-{gpus}gpu-tp{tp}-pp{pp}-mb{mb}-{tag}" + ("-ac" if full else "")
                + ("-sp" if r["sp"] == "1" else ""))
        if name in seen:
            name += f"-t{trial}"  # the same layout run twice in one sweep
        seen.add(name)
        scen = scenario(llama_model(r, ALEPH_VOCAB), "A100-80GB", gpus, "aleph-alpha-scaling", parallel, training,
                        stack or None)
        common = (f"trial {trial}; LLaMA-1 {size}, vocab 128,000 and ZeRO-1 with bf16 gradients assumed, batch 4M "
                  "tokens (SOURCES.md), 1F1B" + ("; no SP (the main sweeps have no SP column)" if not r["sp"] else "")
                  + (f"; {layers} layers over PP {pp} split {parallel['first_stage_layers']} | {-(-layers // pp)} x "
                     f"{pp - 2} | {parallel['last_stage_layers']} (not published; the slowest stage holds as many "
                     "layers as in any near-even split)" if layers % pp else ""))
        if r["status"] == "oom":
            out.append(case(name, ALEPH_GROUP, ALEPH_FILE, n, r, scen,
                            "published 'OOM Error': the memory estimate must say it does not fit; " + common,
                            expect="out-of-memory", extended=True))
            continue
        extra = dict(calibration_row=True, extended=True) if trial == ALEPH_CALIBRATION_TRIAL else dict(extended=True)
        out.append(case(name, ALEPH_GROUP, ALEPH_FILE, n, r, scen,
                        "published mean step time (last 9 of 10 steps); " + common, num(r["step_time_s"]), **extra))
    return out


# --- Single published runs, 2021-2023: BLOOM, MT-NLG, GPT-NeoX-20B, Megatron GPT-3 example --

SINGLE_FILE = "single_points_2021_2023.csv"
SINGLE_GROUP = "Single published runs 2021-2023 (BLOOM, MT-NLG, GPT-NeoX, Megatron GPT-3)"
# Calibration row: BLOOM-176B at the end of its first epoch (data row 2): a primary log line
# of a run whose every setting is in its published launch script.
SINGLE_CALIBRATION_ROW = 2
NEOX_PARAMS = 20_556_201_984  # GPT-NeoX-20B model card ("Num. parameters")


def _bloom(n: int, r: dict[str, str]) -> Case:
    model = gpt_model(70, 14336, 112, int(r["vocab"]), 2048, position="alibi")
    # --pp-partition-method 'type:transformer|embedding': the tied embeddings count as
    # blocks, so the first and last stages hold 5 transformer blocks, the others 6 (README)
    parallel = dict(tp=4, pp=12, dp=8, micro_batch=2, recompute="full", first_stage_layers=5, last_stage_layers=5)
    scen = scenario(model, "A100-80GB", 384, "megatron-deepspeed", parallel, dict(seq_len=2048, global_batch=2048))
    # Jean Zay's A100 nodes: "4 OmniPath links" of 100 Gb/s per node of 8 GPUs (bigscience
    # tr11-176B-ml README "Hardware"; BLOOM paper, arXiv:2211.05100 §3.4.1): 50 Gb/s per GPU
    # when all eight send at once, as in a training step (DGX A100: 200 Gb/s per GPU)
    scen["cluster"]["nic_gbps"] = 50.0
    it = r["quoted_line"].split("iteration")[1].split("/")[0].strip()
    note = (f"published log line, iteration {it}: elapsed time per iteration. tr11-176B-ml.slurm: TP4 PP12 DP8, "
            "micro-batch 2, global batch 2048, --checkpoint-activations, --bf16, ALiBi, --embed-layernorm (its extra "
            "LayerNorm not modelled), vocab padded to 250,880, Megatron's default dropout 0.1 (no dropout flag), "
            "DeepSpeed bf16 optimizer (ZeRO-1 equivalent); CUDA_LAUNCH_BLOCKING=1 in the script (synchronous "
            "launches, not modelled); Jean Zay's Omni-Path network (4 x 100 Gb/s per 8-GPU node) simulated as "
            "DGX A100's fat tree at 50 Gb/s per GPU")
    extra = {"calibration_row": True} if n == SINGLE_CALIBRATION_ROW else {}
    return case(f"bloom-176b-384gpu-iter{it}", SINGLE_GROUP, SINGLE_FILE, n, r, scen, note,
                num(r["step_time_s"]), **extra)


def _mtnlg(n: int, r: dict[str, str]) -> Case:
    gpus = int(r["num_gpus"])
    model = gpt_model(105, 20480, 128, 51200, 2048)
    parallel = dict(tp=8, pp=35, dp=int(r["dp"]), micro_batch=1, recompute="full")
    # bf16: "Model training is done with mixed precision using 16-bit bfloat on NVIDIA's
    # Selene supercomputer" (Smith et al. 2022, arXiv:2201.11990, hardware section; quoted in
    # several transcriptions). Public DeepSpeed had no bf16 with its pipeline engine until
    # 56c522386, "bf16+pipeline parallelism (#1801)", 2022-04-19, so MT-NLG ran a variation
    # of it ("Both Megatron-Turing NLG 530B and Big Science use a variation of this code
    # base", DeepSpeed docs/_tutorials/large-models-w-deepspeed.md:31); the gradient path is
    # taken as that public design, the one BLOOM ran (the megatron-deepspeed stack's bf16
    # path: fp32 accumulation after every micro-batch, fp32 all-reduce)
    training = dict(seq_len=2048, global_batch=1920, precision="bf16")
    scen = scenario(model, "A100-80GB", gpus, "megatron-deepspeed", parallel, training)
    note = ("published §2.4 iteration time (secondary quotation). TP8 PP35, global batch 1920. Assumed (not "
            "transcribed): micro-batch 1, full recomputation, ZeRO-1 (DeepSpeed's pipeline engine supports no "
            "higher stage), vocab 51,200 (GPT-2's padded as Megatron pads it at TP 8); bf16 as the paper says, "
            "with the gradient path of DeepSpeed's public bf16 pipeline design (56c522386, BLOOM's: fp32 "
            "accumulation per micro-batch, fp32 all-reduce); A100-80GB per the "
            "Microsoft/NVIDIA announcement (the quoting repo says 40GB)")
    return case(f"mt-nlg-530b-{gpus}gpu", SINGLE_GROUP, SINGLE_FILE, n, r, scen, note, num(r["step_time_s"]))


def _neox(n: int, r: dict[str, str]) -> Case:
    layers, hidden, seq, batch, gpus = 44, 6144, 2048, int(r["global_batch_seqs"]), int(r["num_gpus"])
    flops = batch * seq * (6 * NEOX_PARAMS + 60 * seq * hidden * layers)
    step = round(flops / (num(r["tflops_per_gpu"]) * 1e12 * gpus), 4)
    model = gpt_model(layers, hidden, 64, 50432, seq, tie=False, dropout=0.0, position="rope")
    parallel = dict(tp=2, pp=4, dp=12, micro_batch=4, recompute="full")
    # DeepSpeed ZeRO-1 of an fp16 run reduces the fp16 gradients as they are (zero/stage2.py)
    training = dict(seq_len=seq, global_batch=batch, precision="fp16", grad_precision="fp16")
    scen = scenario(model, "A100-40GB", gpus, "megatron-deepspeed", parallel, training)
    # GPT-NeoX-20B paper §3: each node's eight GPUs reach the InfiniBand fabric "through one
    # of four ConnectX-6 HCAs" (HDR 200 Gb/s): 100 Gb/s per GPU (DGX A100: 200)
    scen["cluster"]["nic_gbps"] = 100.0
    note = (f"derived: step = B*s*(6*N + 60*s*h*L) / (TFLOP/s x GPUs) = {flops:.4g} / (117e12 x 96), N = "
            f"{NEOX_PARAMS:,} (model card); the formula is ASSUMED: gpt-neox's logger of 2022 (get_flops: "
            "6*params + 60*s*h*L per token), the 117 TFLOP/s coming from a secondary note that states none "
            "(Megatron's hardware formula would give ~9% more). configs/20B.yml: TP2 PP4, micro-batch 4 x 32 "
            "accumulation x DP 12, full checkpointing, ZeRO-1, fp16, no dropout, untied embeddings, rotary on 25% "
            "of each head (simulated on all), parallel attention + MLP (gpt_j_residual; simulated serial), "
            "synchronize-each-layer (not modelled); vocab padded to 50,432; 4 HDR HCAs per 8-GPU node (paper §3): "
            "100 Gb/s per GPU")
    return case("gpt-neox-20b-96gpu", SINGLE_GROUP, SINGLE_FILE, n, r, scen, note, step)


def _megatron_gpt3(n: int, r: dict[str, str]) -> Case:
    model = gpt_model(96, 12288, 96, 51200, 2048)
    parallel = dict(tp=8, pp=16, dp=8, micro_batch=1, recompute="full")
    training = dict(seq_len=2048, global_batch=1536, precision="fp16")
    scen = scenario(model, "A100-80GB", 1024, "megatron-lm-2021", parallel, training)
    note = ("published 'around 32 seconds' per iteration. examples/pretrain_gpt3_175B.sh: TP8 PP16 (DP8), "
            "micro-batch 1, global batch 1536 after ramp-up, --fp16, --checkpoint-activations, no interleaving; "
            "vocab 51,200 (GPT-2's padded); A100-80GB (Selene, as in the SC21 paper of the same months) assumed")
    return case("megatron-gpt3-175b-1024gpu-2021", SINGLE_GROUP, SINGLE_FILE, n, r, scen, note, num(r["step_time_s"]))


SINGLE_CONVERTERS: dict[str, Callable[[int, dict[str, str]], Case]] = {
    "bloom-176b": _bloom, "mt-nlg-530b": _mtnlg, "gpt-neox-20b": _neox, "gpt3-175b": _megatron_gpt3,
}


def single_point_cases() -> list[Case]:
    """BLOOM, MT-NLG, GPT-NeoX-20B and Megatron's GPT-3 example. Left out: OPT-175B (tensor
    parallel degree, micro-batch and recomputation not published, batch only as '2M' tokens,
    and 147 TFLOP/s is a peak of unstated formula) and LLaMA-65B (parallel degrees, batch
    and precision not published)."""
    return [SINGLE_CONVERTERS[r["model"]](n, r) for n, r in numbered(SINGLE_FILE) if r["model"] in SINGLE_CONVERTERS]


# --- Megatron-Core MoE: Mixtral 8x7B and 8x22B on H100 ------------------------------------

MIXTRAL_FILE = "megatron_core_moe_mixtral_h100.csv"
MIXTRAL_GROUP = "Megatron-Core MoE Mixtral (H100)"
# Calibration row: Mixtral 8x22B, dropless with forced balancing, BF16 (data row 4): the
# experts are exactly balanced, as simulated, and the precision is the stack's own.
MIXTRAL_CALIBRATION_ROW = 4


def megatron_moe_flops(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, topk: int, vocab: int,
                       seq: int, batch: int, causal_half: bool) -> float:
    """Megatron-LM training.py num_floating_point_operations for a SwiGLU MoE transformer with
    grouped-query attention, per iteration: 12*B*s*L*h^2*((1 + g/a + s/h) + (F/h)*k*3/2 +
    V/(2hL)); from 8873b55d6a (2025-03) the attention score term is halved (causal, s/2h)."""
    s_term = seq / hidden / (2 if causal_half else 1)
    return (12 * batch * seq * layers * hidden**2
            * ((1 + kv_heads / heads + s_term) + ffn / hidden * topk * 1.5 + vocab / (2 * layers * hidden)))


def mixtral_cases() -> list[Case]:
    """The Megatron-Core MoE README's Mixtral 8x7B figure (MCore v0.9) and the Megatron-MoE-
    ModelZoo's Mixtral 8x22B figures (Dec 2025): model TFLOP/s per GPU, step derived with the
    Megatron-LM FLOPs formula of each date. Left out: the superseded rows (older software or a
    same-day correction)."""
    out = []
    for n, r in numbered(MIXTRAL_FILE):
        if r["status"] != "ok":
            continue
        layers, hidden, heads, kv = int(r["layers"]), int(r["hidden"]), int(r["heads"]), int(r["kv_heads"])
        ffn, vocab, seq, batch = int(r["ffn_hidden"]), int(r["vocab"]), int(r["seq_len"]), int(r["global_batch_seqs"])
        gpus, tp, pp, vp, ep = (int(r[k]) for k in ("num_gpus", "tp", "pp", "vp", "ep"))
        half = "causal attention halved" in r["tflops_basis"]
        flops = megatron_moe_flops(layers, hidden, heads, kv, ffn, 2, vocab, seq, batch, half)
        step = round(flops / (num(r["tflops_per_gpu"]) * 1e12 * gpus), 4)
        assert abs(step - num(r["step_time_s"])) < 1e-3, (n, step, r["step_time_s"])
        model: dict[str, Any] = {"name": r["model"]}
        if r["model"] == "mixtral-8x22b":
            model["vocab_size"] = vocab  # the ModelZoo's Llama 2 tokenizer (32,000), not the released 32,768
        drop = "capacity-factor" in r["quoted_line"]
        if drop:
            model["capacity_factor"] = 1.0
        fp8 = r["precision"].startswith("FP8")
        # Megatron-Core's default rank order tp-cp-ep-dp-pp: each EP group of 8 is 8 consecutive
        # data-parallel ranks, one node's NVLink domain here.
        parallel = dict(tp=tp, pp=pp, vp=vp, ep=ep, dp=int(r["dp"]), micro_batch=int(r["micro_batch"]),
                        sequence_parallel=tp > 1, recompute="none", zero=1, order="tp-cp-dp-pp")
        training: dict[str, Any] = dict(seq_len=seq, global_batch=batch)
        if fp8:
            training["precision"] = "fp8"
            # the ModelZoo's FP8 command (PR=fp8): --fp8-recipe blockwise --fp8-format e4m3
            # (Transformer Engine's Float8BlockScaling: simtrain.workload.fp8)
            training["fp8_recipe"] = "blockwise"
        engine = {"overlap_tp_comm": False} if fp8 else None
        size = r["model"].split("-")[1]
        kind = "fp8" if fp8 else ("tokendrop" if drop else ("balanced" if "forced balancing" in r["quoted_line"]
                                                              else "dropless"))
        name = f"mcore-mixtral-{size}-{gpus}gpu-{kind}"
        caveats = {
            "dropless": "dropless with the aux-loss router: the expert load of the run is not published and is "
                        "simulated balanced (engine.expert_imbalance 0), so the simulation is an optimistic bound",
            "balanced": "forced load balancing (--moe-router-force-load-balancing): experts balanced, as simulated",
            "fp8": "blockwise FP8 (--fp8-recipe blockwise --fp8-format e4m3: 1x128 activation and 128x128 weight "
                   "blocks; training.fp8_recipe = blockwise) with forced balancing; --fp8-param-gather and "
                   "--use-precision-aware-optimizer not modelled (parameters gathered in bf16); no --tp-comm-overlap "
                   "in the FP8 command (engine.overlap_tp_comm = false)",
            "tokendrop": "capacity factor 1.0 with expert inputs padded to capacity (model.capacity_factor = 1)",
        }[kind]
        if r["model"] == "mixtral-8x7b":
            shape = ("the README's 8x7B reference mapping (TP1 EP8 PP4 VP8, MBS 1, GBS 256, 4K, BF16, all-to-all, "
                     "dropless) and its H100 servers; the headline figure does not restate the layout. Not published: "
                     "recomputation (none assumed), distributed optimizer (assumed, as the README recommends), load "
                     "balance (aux-loss router; simulated balanced)")
        else:
            shape = ("ModelZoo runtime.conf and Mixtral-8x22B.yaml (TP2 PP8 VPP7 EP8 ETP1, MBS 1, GBS 256, 4K, "
                     "sequence parallel, distributed optimizer with overlapped reduce/gather, no recomputation, "
                     "--use-flash-attn, under which Transformer Engine picks its fused attention backend: the stack's cuDNN attention is used); 'around' figures; " + caveats)
        note = (f"derived: step = Megatron-LM num_floating_point_operations "
                f"({'causal-halved, 2025-03 on' if half else '2024, attention not halved'}) = {flops:.4g} / "
                f"({r['tflops_per_gpu']}e12 x {gpus}). Layout: {shape}. Megatron-Core rank order (EP groups within "
                "a node)")
        extra = {"calibration_row": True} if n == MIXTRAL_CALIBRATION_ROW else {}
        out.append(case(name, MIXTRAL_GROUP, MIXTRAL_FILE, n, r,
                        scenario(model, "H100", gpus, "megatron-core", parallel, training, engine=engine),
                        note, step, **extra))
    return out


# --- Megatron-Bridge: NVIDIA's A/B of the expert-parallel overlap, Qwen3 30B-A3B on H100 ---

MB_OVERLAP_FILE = "megatron_bridge_moe_overlap_ab_h100.csv"
MB_OVERLAP_GROUP = "Megatron-Bridge MoE overlap A/B, BF16 (H100)"
# Calibration row: overlap off (data row 1), the baseline the A/B changes one setting of.
MB_OVERLAP_CALIBRATION_ROW = 1


def mbridge_overlap_cases() -> list[Case]:
    """NVIDIA's controlled A/B of --overlap-moe-expert-parallel-comm (Megatron-Bridge PR #5094's
    skill text): the same 16-GPU recipe with the overlap off and on, measured step times."""
    out = []
    for n, r in numbered(MB_OVERLAP_FILE):
        on = "overlap on" in r["quoted_line"]
        parallel = dict(tp=1, pp=1, ep=16, dp=16, micro_batch=1, zero=1, order="tp-cp-dp-pp",
                        # HybridEP sends a token over RDMA once per destination node (as the FP8
                        # scenario nemo-moe-qwen3-30b-a3b-16): node-limited at both nodes
                        ep_node_limit=2)
        training = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]), grad_precision="bf16")
        scen = scenario({"name": r["model"]}, "H100", int(r["num_gpus"]), "megatron-core", parallel, training,
                        {"ep_overlap_sms": 32})
        if on:  # Megatron-Core's combined 1F1B without pipelining
            scen["schedule"] = dict(name="interleaved-ep-overlap")
        note = ("measured step time (the skill's table). Recipe: Megatron-Bridge recipes/qwen/h100/qwen3_moe.py "
                "qwen3_30b_a3b_pretrain_16gpu_h100_bf16_config at 7ded17dae: HybridEP with 32 SMs "
                "(stack.ep_overlap_sms), bf16 gradient reduction, distributed optimizer with fp32 states, no "
                "recomputation, force-balanced experts (as simulated); " + ("overlap on (schedule interleaved-ep-overlap: "
                "F0, then F(k+1) & B(k))" if on else "overlap off (1F1B)") + ". Not modelled: the CUDA graphs of "
                "the router and preprocessing (host time is not simulated)")
        extra = {"calibration_row": True} if n == MB_OVERLAP_CALIBRATION_ROW else {}
        name = f"mbridge-qwen3-30b-a3b-h100-16gpu-bf16-overlap-{'on' if on else 'off'}"
        out.append(case(name, MB_OVERLAP_GROUP, MB_OVERLAP_FILE, n, r, scen, note, num(r["step_time_s"]), **extra))
    return out


# --- Nemotron-4 technical reports: 15B and 340B batch-ramp stages on DGX H100 ------------

NEMOTRON_FILE = "nemotron4_reports_2024.csv"
NEMOTRON_GROUP = "Nemotron-4 technical reports (H100)"
# Calibration row: Nemotron-4 15B on 768 GPUs (data row 1): the report's primary text, and
# no pipeline, so neither the assumed interleaving depth nor the pipeline schedule of the
# 340B rows enters the fit.
NEMOTRON_CALIBRATION_ROW = 1
# Not published for either model (assumed, as the case notes say): one sequence per
# micro-batch, Megatron's usual setting for these runs (NVIDIA's own 340B launcher config,
# nemotron_340b.yaml, sets micro_batch_size 1), and for the 340B's "12-way pipeline
# parallelism with interleaving" one layer per virtual stage (96 layers / (PP 12 x VP 8)),
# the depth NVIDIA's NeMo 340B configs use (PP 8 x VP 12 = 96 chunks of one layer); NeMo 2's
# nemotron4_340b pretrain_recipe defaults to exactly TP 8, PP 12, VP 8 (with CP 2, 768 nodes,
# GBS 2,304, MBS 1; nemo/collections/llm/recipes/nemotron4_340b.py at d2b21556f2).
NEMOTRON_MICRO_BATCH = 1
NEMOTRON_340B_VP = 8


def nemotron340b_model() -> dict[str, Any]:
    """Nemotron-4 340B: 96 layers, hidden 18432, 96 heads / 8 KV heads (head dim 192), squared-
    ReLU MLP of 73,728 (two matrices: simtrain's "plain"), RoPE, no biases, untied embeddings,
    LayerNorm, vocabulary 256,000 (the report via the notes cited in SOURCES.md; FFN from NeMo's
    Nemotron4Config340B)."""
    return dict(num_hidden_layers=96, hidden_size=18432, intermediate_size=73728, num_attention_heads=96,
                num_key_value_heads=8, vocab_size=256000, mlp="plain", bias=False, position_embedding="rope",
                norm="layernorm", tie_word_embeddings=False)


def nemotron_cases() -> list[Case]:
    """The Nemotron-4 15B report's Table 2 (primary text) and the 340B report's Table 2 (via
    agreeing third-party notes): published iteration time per batch-ramp stage. Layout TP 8 x
    DP (15B) and TP 8 x PP 12 interleaved x DP (340B) as published, with the distributed
    optimizer; micro-batch, interleaving depth and sequence parallelism assumed."""
    out = []
    for n, r in numbered(NEMOTRON_FILE):
        gpus, tp, pp, dp = int(r["num_gpus"]), int(r["tp"]), int(r["pp"]), int(r["dp"])
        big = r["model"] == "nemotron4-340b"
        # squared ReLU, two matrices, is simulated as simtrain's plain MLP: same GEMMs, and the
        # stack's fused activation kernel stands for relu(x)**2 (its elementwise cost differs
        # from GELU's little)
        model = nemotron340b_model() if big else {"name": "nemotron4-15b"}
        vp = NEMOTRON_340B_VP if big else 1
        parallel = dict(tp=tp, pp=pp, vp=vp, dp=dp, micro_batch=NEMOTRON_MICRO_BATCH, sequence_parallel=True,
                        recompute="none", zero=1)
        training = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]))
        size = r["model"].split("-")[1]
        name = f"nemotron4-{size}-report-{gpus}gpu"
        layout = (f"TP 8 x PP 12 with interleaving x DP {dp} (published), {vp} virtual stages per pipeline rank (one layer "
                  "each; the depth is not published: assumed, as NeMo 2's nemotron4_340b pretrain_recipe defaults to PP 12 x "
                  "VP 8)" if big else f"TP 8 x DP {dp} (published; no pipeline)")
        note = (f"published iteration time (Table 2, batch-ramp stage of {r['global_batch_seqs']} sequences; "
                + ("the 340B report's table via third-party notes, SOURCES.md" if big else "the 15B report's text")
                + f"). Layout: {layout}; distributed optimizer (published). Assumed (not published): micro-batch "
                  f"{NEMOTRON_MICRO_BATCH}, sequence parallelism, no recomputation, bf16 (the MFU is against the bf16 "
                  "peak), the megatron-core stack's 2024 defaults (Transformer Engine kernels, cuDNN attention, TP "
                  "communication overlapped with GEMMs, overlapped gradient reduce-scatter and parameter all-gather). "
                  "Squared-ReLU MLP simulated as the plain two-matrix MLP (same GEMMs); RoPE on all head dims (NeMo "
                  "configs apply it to half); LayerNorm (layernorm1p's zero-centred gamma costs the same)")
        extra = {"calibration_row": True} if n == NEMOTRON_CALIBRATION_ROW else {}
        out.append(case(name, NEMOTRON_GROUP, NEMOTRON_FILE, n, r,
                        scenario(model, "H100", gpus, "megatron-core", parallel, training),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- NVIDIA DGX Cloud benchmarks (GSW 24.11, NeMo 24.09): Nemotron-4 340B on H100 ----------

# NeMo 1.0's distributed_fused_adam is Apex's DistributedFusedAdam, which keeps its own
# gradient buckets instead of Megatron-Core DDP's buffer: the stack's gradient-buffer passes
# (zeroing, NaN check, 1/DP scaling) are not what it runs, and its own are not modelled.
DFA_STACK = {"grad_buffer_passes": []}
# The 340B recipe also sets the optimizer's dtype (nemotron4-340b-synth.yaml, optim:
# "dtype: bf16", dgxc-benchmarking v24.11.1 35a9aec): Apex's DistributedFusedAdam keeps its
# parameter shard (store_params) and both Adam moments in that dtype, 2 + 2 + 2 B per
# parameter of its 1/DP shard instead of 4 + 4 + 4 (the Llama 3.1 and GPT-3 recipes leave it
# at fp32).
DFA_BF16_STATE_STACK = {**DFA_STACK, "optimizer_master": "bf16", "optimizer_moments": "bf16"}
DGXC340_FILE = "nvidia_dgxc_nemotron4_340b_2411.csv"
DGXC340_GROUP = "NVIDIA DGX Cloud 24.11, Nemotron-4 340B (H100)"
# Calibration row: BF16 on 128 GPUs (data row 1): the stack's own precision, and the smallest
# data-parallel degree, so the least gradient traffic enters the fit.
DGXC340_CALIBRATION_ROW = 1


def dgxc_nemotron340b_cases() -> list[Case]:
    """The DGX Cloud benchmarking recipe's Nemotron-4 340B tables (BF16 and FP8, 128..2048
    H100s): published step time, every layout setting from the recipe's launch scripts and
    config (README_340b.md, configure.sh, nemotron4-340b-synth.yaml at the same commit)."""
    out = []
    for n, r in numbered(DGXC340_FILE):
        gpus, tp, pp, vp, dp = (int(r[k]) for k in ("num_gpus", "tp", "pp", "vp", "dp"))
        fp8 = r["precision"] == "FP8"
        parallel = dict(tp=tp, pp=pp, vp=vp, dp=dp, micro_batch=int(r["micro_batch"]), sequence_parallel=True,
                        recompute="selective", zero=1, attention_kernel="fa2")
        # optim.grad_sync_dtype: bf16 (Apex DistributedFusedAdam keeps its gradient buckets and
        # reduce-scatters them in that dtype): simtrain's bf16 gradients
        training: dict[str, Any] = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]),
                                        grad_precision="bf16")
        if fp8:  # launch.sh: +model.fp8_params=${FP8_ENABLED^} (the FP8 weights all-gathered in FP8)
            training.update(precision="fp8", fp8_params=True)
        name = f"dgxc-nemotron4-340b-{gpus}gpu-{'fp8' if fp8 else 'bf16'}"
        note = ("published step time (the recipe's last-step train_step_timing). README: TP 8, PP 8, VP 12, MBS 1, GA 16, "
                f"GBS {r['global_batch_seqs']} (DP {dp} derived). configure.sh / nemotron4-340b-synth.yaml: sequence "
                "parallelism, userbuffers TP-communication overlap (no per-model ub config: Transformer Engine's default SM "
                "split, the stack's), overlapped P2P, selective recomputation (core attention), NVTE_FUSED_ATTN=0 (TE's "
                "flash-attn backend: attention_kernel fa2), NeMo's distributed optimizer (distributed_fused_adam) with "
                "grad_sync_dtype bf16 (bf16 gradient buckets and reduce-scatter: training.grad_precision bf16) and dtype bf16 "
                "(bf16 master-weight shard and moments), overlapped "
                "gradient reduce-scatter and parameter all-gather"
                + ("; FP8 hybrid (delayed per-tensor scaling, simtrain's FP8) with fp8_params (launch.sh: weights held "
                   "and all-gathered in FP8, training.fp8_params)" if fp8 else "; BF16")
                + ". Not modelled: squared ReLU's second elementwise kernel (Megatron-Core fuses only GELU/SwiGLU; simulated "
                  "as the plain MLP's one activation kernel), RoPE on half of each head (simulated on all), the layer-norm SM "
                  "margins; synthetic data, 50 steps")
        extra = {"calibration_row": True} if n == DGXC340_CALIBRATION_ROW else {}
        out.append(case(name, DGXC340_GROUP, DGXC340_FILE, n, r,
                        scenario(nemotron340b_model(), "H100", gpus, "megatron-core", parallel, training,
                                 stack_values=DFA_BF16_STATE_STACK),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- NVIDIA DGX Cloud benchmarks 25.04 (NeMo 25.02.01): Nemotron-4 15B and 340B on H100 ----

# NeMo 2's nemotron recipes (nemo/collections/llm/recipes/nemotron.py:128-135 at v2.2.1, the
# 25.02.01 container): Megatron-Core DDP with check_for_nan_in_grad and average_in_collective,
# so the buffer is zeroed and NaN-checked but not scaled by 1/DP (the collective averages)
NEMO2_AVG_STACK = {"grad_buffer_passes": ["zero", "nan-check"]}
DGXC2504_FILE = "nvidia_dgxc_nemotron4_2504.csv"
DGXC2504_GROUP = "NVIDIA DGX Cloud 25.04, Nemotron-4 15B and 340B (H100)"
# Calibration row: 15B BF16 on 16 GPUs (data row 1): the stack's own precision, no pipeline,
# and the smallest data-parallel degree.
DGXC2504_CALIBRATION_ROW = 1


def dgxc2504_nemotron_cases() -> list[Case]:
    """The DGX Cloud benchmarking recipe's Nemotron-4 tables of release 25.04 (NeMo 2's
    performance scripts in the NeMo 25.02.01 container): published step times, every layout
    setting from launch.sh and the NeMo scripts it runs (SOURCES.md)."""
    out = []
    for n, r in numbered(DGXC2504_FILE):
        gpus, tp, pp, dp, mb = (int(r[k]) for k in ("num_gpus", "tp", "pp", "dp", "micro_batch"))
        vp = int(r["vp"]) if r["vp"] else 1
        big = r["model"] == "nemotron4-340b"
        fp8 = r["precision"] == "FP8"
        model = nemotron340b_model() if big else {"name": "nemotron4-15b"}
        parallel = dict(tp=tp, pp=pp, vp=vp, dp=dp, micro_batch=mb, sequence_parallel=tp > 1, recompute="none", zero=1)
        # performance_mode sets grad_reduce_in_fp32 = False (and the FP8 plugin likewise)
        training: dict[str, Any] = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]),
                                        grad_precision="bf16")
        if fp8:  # bf16_with_fp8_mixed(): fp8_params = True (recipes/precision/mixed_precision.py:53 at v2.2.1)
            training.update(precision="fp8", fp8_params=True)
        size = r["model"].split("-")[1]
        name = f"dgxc2504-nemotron4-{size}-{gpus}gpu-{'fp8' if fp8 else 'bf16'}"
        note = (f"published step time (last-step train_step_timing). launch.sh: TP {tp}, PP {pp}"
                + (f", VP {vp} (the README's layout table says NA; the script passes -vp 12)" if big else "")
                + f", MBS {mb}, GBS {r['global_batch_seqs']} (DP {dp}, GA {int(r['global_batch_seqs']) // (dp * mb)} "
                  "derived). NeMo's performance recipe: userbuffers TP-communication overlap with Transformer Engine's default "
                  "SM split (no H100 config: the stack's), sequence parallelism, distributed optimizer with overlapped "
                  "gradient reduce and parameter gather, bf16 gradient reduction (grad_reduce_in_fp32 False), no "
                  "recomputation, cuDNN fused attention, no CUDA graphs"
                + ("; FP8 (delayed per-tensor scaling: simtrain's FP8) with fp8_params (weights held and all-gathered in "
                   "FP8)" if fp8 else "; BF16")
                + (". Not modelled: the deferred embedding weight-gradient GEMMs" if big else "")
                + ". Squared ReLU simulated as the plain MLP's one activation kernel; RoPE on all head dims")
        extra = {"calibration_row": True} if n == DGXC2504_CALIBRATION_ROW else {}
        out.append(case(name, DGXC2504_GROUP, DGXC2504_FILE, n, r,
                        scenario(model, "H100", gpus, "megatron-core", parallel, training,
                                 stack_values=NEMO2_AVG_STACK),
                        note, num(r["step_time_s"]), **extra))
    return out


# --- NVIDIA Megatron-Bridge performance summary: dense Llama 3 / 3.1 FP8 on H100, B200, GB200, GB300

MBRIDGE_FILE = "nemo_megatron_bridge_perf_summary.csv"
MBRIDGE_GROUP = "Megatron-Bridge dense FP8 (H100, B200, GB200, GB300)"
# Calibration row: Llama 3 70B on 64 H100s, NeMo 25.11 (data row 251): the GPU the stack's
# constant was fitted on (NeMo 24.09, H100), and the middle model size.
MBRIDGE_CALIBRATION_ROW = 251
# The rows simulated, each the benchmark recipe of its container's Megatron-Bridge release
# (docs/versions1.json: 25.11 = v0.2.0 7af9601c9, 26.04.01 = v0.4.2 c81012934, 26.06 = v0.5.0
# fcbb60311), read at that tag: row -> (container, CUDA graphs, PP split counts embedding and
# loss as layers). Settings every row shares are in mbridge_dense_cases' note.
MBRIDGE_ROWS = {
    251: ("25.11", False, False),  # H100 70B FP8-CS, TP4 PP8 VP5, GBS 128 (configs/llama3/workload_base_configs.py:140-145)
    70: ("26.04.01", False, False),  # H100 70B FP8 (fp8_cs), GBS 256 (llama3_workload_base_configs.py:339-344, V2)
    252: ("25.11", False, True),  # H100 405B FP8-CS, TP8 PP8 VP8 CP2, GBS 512 (configs/llama31/workload_base_configs.py:159-167)
    39: ("26.06", False, True),  # H100 405B FP8 (fp8_cs), GBS 1536 (llama31_workload_base_configs.py:203-211, 314-317)
    233: ("25.11", True, False),  # GB200 8B FP8-CS, MBS 2, cuda_graph_impl local, full_iteration (workload_base_configs.py:182-187)
    242: ("25.11", True, False),  # B200 8B FP8-CS, same (workload_base_configs.py:207-212)
    36: ("26.06", False, True),  # GB200 405B FP8 (fp8_cs), TP4 PP16 VP4, GBS 1536, V2 (llama31_workload_base_configs.py:263-273)
    244: ("25.11", False, True),  # B200 405B FP8-CS, TP4 PP8 VP8 CP2, GBS 64 (configs/llama31/workload_base_configs.py:125-133)
    # MXFP8 twins of three of them: at v0.2.0 the FP8_MX preset is the FP8_CS one
    # (LLAMA3_8B_GB200/B200_FP8_MX_BASE_CONFIG = ..._FP8_CS_BASE_CONFIG, configs/llama3/
    # workload_base_configs.py:189, 215; LLAMA31_405B_B200_FP8_MX_BASE_CONFIG, configs/llama31/
    # workload_base_configs.py:136), the precision bf16_with_mxfp8_mixed (e4m3, mxfp8,
    # fp8_param_gather; training/mixed_precision.py:242-253)
    234: ("25.11", True, False),  # GB200 8B FP8-MX (twin of 233)
    243: ("25.11", True, False),  # B200 8B FP8-MX (twin of 242)
    245: ("25.11", False, True),  # B200 405B FP8-MX (twin of 244)
    # GB200 MXFP8 presets with no FP8-CS twin, the same at v0.3.0-v0.4.2 (and v0.5.0 for
    # 405B): LLAMA3_70B_PRETRAIN_CONFIG_GB200_FP8_MX_V2 (configs/llama/
    # llama3_workload_base_configs.py:249-254; TP2 PP4 VP5, MBS 1, GBS 256, no CUDA graphs,
    # userbuffers_fp8_b200_h8192_tp2_mbs1_seqlen8192) and LLAMA31_405B_PRETRAIN_CONFIG_GB200_
    # FP8_MX_V2 (llama31_workload_base_configs.py:276-282 at v0.5.0; TP4 PP16 VP8, GBS 1536,
    # embedding and loss counted in the split); no recomputation, offloading or FSDP
    68: ("26.04.01", False, False),  # GB200 70B MXFP8
    37: ("26.06", False, True),  # GB200 405B MXFP8
    # GB300 NVL72 (Blackwell Ultra). 25.11's 8B pair: the table (docs at v0.2.1, where GB300
    # first appears) prints MBS 2 and GA 8, the v0.2.0-v0.2.2 preset LLAMA3_8B_GB300_FP8_CS_BASE_
    # CONFIG says micro_batch_size=4 (configs/llama3/workload_base_configs.py:158-163): the
    # table's MBS is what ran (its GA agrees); CUDA graphs of the whole iteration as the preset's,
    # the FP8_MX preset = the FP8_CS one. Its 70B FP8-CS row (Megatron FSDP, 20 layers offloaded)
    # and 25.11 405B row (the table's TP2 PP8 CP2 against a preset of Megatron FSDP with
    # offloading on 128 GPUs) are left out.
    224: ("25.11", True, False),  # GB300 8B FP8-CS
    225: ("25.11", True, False),  # GB300 8B FP8-MX (twin of 224)
    # LLAMA3_70B_PRETRAIN_CONFIG_GB300_FP8_MX_V2 at v0.4.2 (llama3_workload_base_configs.py:219-
    # 223; TP1 PP4 VP5, GBS 256, no CUDA graphs) and LLAMA31_405B_PRETRAIN_CONFIG_GB300_FP8_CS_V2
    # / _FP8_MX_V2 at v0.5.0 (llama31_workload_base_configs.py:225-243: TP4 PP8 VP4 and TP2 PP8
    # CP2 VP4, GBS 1536, no FSDP or offloading; llama31_llm_pretrain.py:58-89: the B200 userbuffers
    # config userbuffers_fp8_b200_h16384_tp4_cp2_mbs1_seqlen8192, as GB200's)
    65: ("26.04.01", False, False),  # GB300 70B MXFP8
    33: ("26.06", False, True),  # GB300 405B FP8 (fp8_cs)
    34: ("26.06", False, True),  # GB300 405B MXFP8
}
MBRIDGE_MX_OWN_PRESET = (68, 37, 65, 34)
# Llama 3 8B / 70B and 3.1 405B shapes (the public Hugging Face configs the recipes load);
# vocabulary 128,256 unpadded (tokenizer.vocab_size 128256 and should_pad_vocab reset when the
# model's vocabulary equals the tokenizer's: v0.2.0 training/setup.py _validate_and_set_vocab_size)
MBRIDGE_MODELS = {"llama3-8b": "llama3-8b", "llama3-70b": "llama3-70b", "llama3.1-405b": "llama3-405b"}
MBRIDGE_LAYERS = {"llama3-8b": 32, "llama3-70b": 80, "llama3.1-405b": 126}
# The recipes' userbuffers configs (src/megatron/bridge/training/comm_overlap.py, the same at
# v0.2.0, v0.4.2 and v0.5.0): SMs each overlapped TP collective takes from its GEMM, in the
# order of simtrain.scenario.stack.TP_OVERLAP_GEMMS (bulk: num_sm; ring exchange on copy
# engines: 0, or its num_sm with set_sm_margin)
MBRIDGE_UB_SMS = {
    ("H100", "llama3-70b"): [4, 24, 2, 4, 0, 0, 0, 0, 1, 1],  # userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192
    ("H100", "llama3.1-405b"): [2, 24, 2, 2, 0, 0, 0, 0, 1, 1],  # userbuffers_fp8_h100_h16384_tp8_cp2_mbs1_seqlen8192
    ("B200", "llama3.1-405b"): [8, 32, 2, 8, 0, 0, 0, 0, 1, 1],  # userbuffers_fp8_b200_h16384_tp4_cp2_mbs1_seqlen8192
    ("GB200", "llama3.1-405b"): [8, 32, 2, 8, 0, 0, 0, 0, 1, 1],  # the same (llama31_llm_pretrain.py, GB200 TP4)
    ("GB200", "llama3-70b"): [4, 24, 2, 4, 0, 0, 0, 0, 1, 1],  # userbuffers_fp8_b200_h8192_tp2_mbs1_seqlen8192
    ("GB300", "llama3.1-405b"): [8, 32, 2, 8, 0, 0, 0, 0, 1, 1],  # the same as GB200's (llama31_llm_pretrain.py:72-75)
}


def _mbridge_gpu(row: dict[str, str]) -> str:
    return next(g for g in ("GB300", "GB200", "B300", "B200", "H100") if row["gpu"].startswith(g))


def mbridge_dense_cases() -> list[Case]:
    """NVIDIA's Megatron-Bridge performance summary (NeMo containers 25.11-26.06): dense Llama
    pre-training in FP8 with per-tensor current scaling on DGX H100, DGX B200, GB200 NVL72 and
    GB300 NVL72, and in MXFP8 on B200, GB200 and GB300;
    step time derived from the published tokens/s/GPU; every setting from the benchmark recipe
    at the container's release tag (SOURCES.md)."""
    out = []
    for n, r in numbered(MBRIDGE_FILE):
        if n not in MBRIDGE_ROWS:
            continue
        container, graphs, split_ends = MBRIDGE_ROWS[n]
        gpu = _mbridge_gpu(r)
        gpus, tp, pp, cp, dp, mb = (int(r[k]) for k in ("num_gpus", "tp", "pp", "cp", "dp", "micro_batch"))
        vp = int(r["vp"]) if r["vp"] else 1
        parallel: dict[str, Any] = dict(tp=tp, pp=pp, vp=vp, cp=cp, dp=dp, micro_batch=mb, sequence_parallel=tp > 1,
                                        recompute="none", zero=1, attention_kernel="cudnn")
        if cp > 1:
            parallel["cp_algo"] = "ring"  # Megatron-Core's default cp_comm_type, p2p (not set by the recipes)
        if split_ends:  # account_for_embedding/loss_in_pipeline_split: 126 layers + 2 over the pp*vp chunks, the
            # embedding and the loss one layer each: 2 per chunk at 64 chunks, 1 at 128 (the ends' chunks then hold
            # no transformer layer)
            per = (MBRIDGE_LAYERS[r["model"]] + 2) // (pp * vp)
            parallel.update(first_stage_layers=per - 1, last_stage_layers=per - 1)
        mx = r["precision"].upper().replace("-", "") in ("FP8MX", "MXFP8")
        training: dict[str, Any] = dict(seq_len=int(r["seq_len"]), global_batch=int(r["global_batch_seqs"]),
                                        grad_precision="bf16", precision="fp8", fp8_recipe="mxfp8" if mx else "current",
                                        fp8_params=True)
        model = {"name": MBRIDGE_MODELS[r["model"]]}
        size = r["model"].split("-")[1]
        name = f"mbridge-{r['model']}-{gpu.lower()}-{gpus}gpu-gbs{r['global_batch_seqs']}" + ("-mxfp8" if mx else "")
        note = (f"derived: step = GBS x seq / (tokens/s/GPU x GPUs) (the CSV's step_time_s), NeMo {container} container. "
                f"Recipe (Megatron-Bridge at the container's release tag): TP {tp}, PP {pp}"
                + (f", VP {vp}" if vp > 1 else "") + (f", CP {cp} (p2p ring, Megatron-Core's default)" if cp > 1 else "")
                + f", MBS {mb}; "
                + ("MXFP8 (bf16_with_mxfp8_mixed: e4m3, mxfp8 block scaling, fp8_param_gather: training.fp8_params; "
                   + ("its own FP8_MX_V2 preset); " if n in MBRIDGE_MX_OWN_PRESET else "the FP8-CS row's preset otherwise); ")
                   if mx else
                   "FP8 current per-tensor scaling (bf16_with_fp8_current_scaling_mixed: fp8 hybrid, "
                   "tensorwise, fp8_param_gather: training.fp8_params; first and last layers in FP8 too); ")
                + "bf16 gradient "
                  "reduction (grad_reduce_in_fp32 False); distributed optimizer with overlapped gradient reduce-scatter "
                  "and parameter all-gather; no recomputation; rope and cross-entropy fusions"
                + ("; sequence parallelism with userbuffers TP-communication overlap (the recipe's config: SMs per "
                   "overlapped GEMM as stack tp_overlap_sms)" if tp > 1 else "")
                + ("; the pipeline split counts the embedding and the loss as layers (one layer fewer on the first "
                   "and last virtual stages than on the others)" if split_ends else "")
                + ("; CUDA graphs of the whole iteration (cuda_graph_impl local, full_iteration): host time per kernel "
                   "launch 0.8 us, the replay rate measured on the H200 host (stack launch_us)" if graphs else "")
                + ". Assumed: cuDNN fused attention (the recipes leave attention_backend to Transformer Engine's choice); "
                  "not modelled: overlap_param_gather_with_optimizer_step, the layer-norm SM margins, manual GC every 100 "
                  f"steps. Model: {size} Llama shape, vocabulary 128,256")
        extra = {"calibration_row": True} if n == MBRIDGE_CALIBRATION_ROW else {}
        stack_values: dict[str, Any] = {"launch_us": 0.8} if graphs else {}
        if tp > 1:
            stack_values["tp_overlap_sms"] = MBRIDGE_UB_SMS[(gpu, r["model"])]
        out.append(case(name, MBRIDGE_GROUP, MBRIDGE_FILE, n, r,
                        scenario(model, gpu, gpus, "megatron-core", parallel, training, stack_values or None),
                        note, num(r["step_time_s"]), **extra))
    return out


CONVERTERS: tuple[Callable[[], list[Case]], ...] = (
    mpt_cases, torchtitan_cases, korthikanti_cases, megatron_h100_cases, megascale_cases, flashattention_cases,
    aleph_alpha_cases, single_point_cases, mixtral_cases, nemotron_cases,
    dgxc_nemotron340b_cases, dgxc2504_nemotron_cases, mbridge_dense_cases, mbridge_overlap_cases,
)


def all_cases() -> list[Case]:
    """Every case of every source, in a fixed order; names are unique."""
    out = [c for convert in CONVERTERS for c in convert()]
    names = [c["name"] for c in out]
    dup = sorted({x for x in names if names.count(x) > 1})
    assert not dup, f"duplicate case names: {dup[:5]}"
    return out
