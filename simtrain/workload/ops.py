"""Every kernel of one transformer layer, as Megatron-LM and PyTorch run it, for one
micro-batch on one tensor-parallel rank: FLOPs, effective bytes, kernel launches and GPU
time, and which parallelism shards it (Shoeybi et al. 2019 for TP; Korthikanti et al. 2022
for sequence parallelism, which shards norms, dropout and residuals over TP ranks).

Per layer (b = micro-batch, s = sequence on this CP rank, t = b*s tokens, t_sp = t/TP with
sequence parallelism else t, h = hidden, f = FFN width / TP, heads and KV heads / TP):
  segment 0 (attention block): norm (t_sp*h) -> QKV GEMM -> rotary (Q and K elements)
      -> attention core -> O GEMM -> [TP collective] -> residual or bias-dropout-add (t_sp*h)
  segment 1 (MLP block): norm -> up GEMM (gate+up for SwiGLU) -> activation (t*f)
      -> down GEMM -> [TP collective] -> residual or bias-dropout-add
Multi-head latent attention (DeepSeek) replaces the QKV GEMM by its down projections (on
the sequence shard, each with an RMSNorm) and up projections (split by heads); its heads
score with d_qk = nope + rope dimensions and return d_v (simtrain.scenario.models).
The backward has each operator's backward kernels (input gradient) and, for GEMMs, a
weight-gradient GEMM (its own phase, so zero-bubble schedules can defer it).
Attention core: a fused kernel (measured curves per kernel, sequence length, head dim and
mask) or, unfused as in Megatron-LM 2021, two batched GEMMs around a softmax over the full
s x s scores (and a dropout on them for GPT-style models).
Which memory-bound kernels are fused is the software stack's choice (scenario/stack.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from simtrain.hardware.devices import Device
from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.models import ModelConfig, attention_linears, has_dropout, is_mla, qk_head_dim, v_head_dim
from simtrain.scenario.stack import TP_OVERLAP_GEMMS, Stack
from simtrain.workload import fp8 as FP8
from simtrain.workload import zero3 as Z3
from simtrain.workload.compute import attention_time, gemm_flops, gemm_time, op_time
from simtrain.workload.kernels import mem_op

PHASES = ("fwd", "bwd", "wgrad")


@dataclass(frozen=True)
class Op:
    name: str  # "qkv", "attention", "norm", ...
    kind: str  # "gemm" | "attention" | "memory" | "host" (host time the GPU waits for, not GPU work)
    segment: int  # 0: attention block, 1: MLP block
    phase: str  # "fwd", "bwd" (input gradient) or "wgrad" (weight gradient)
    seconds: float  # GPU time
    kernels: int  # launches
    flops: float = 0.0  # executed FLOPs (GEMMs and attention)
    nbytes: float = 0.0  # effective HBM bytes (memory-bound operators)
    recompute: bool = False  # part of what selective recomputation runs again


def _gemm(dev: Device, name: str, seg: int, m: int, n: int, k: int, fp8: str = "", chunks: int = 1,
          bwd_chunks: int | None = None, parts: tuple[int, ...] = (), io: tuple[int, bool, int] = (1, False, 1)) -> list[Op]:
    """Y[m,n] = X[m,k] W[k,n]: forward, input gradient dX = dY W^T, weight gradient dW = X^T dY.
    With `fp8` (a Transformer Engine linear under that FP8 recipe, simtrain.workload.fp8):
    the GEMMs at the FP8 peak (and the recipe's GEMM efficiency), 1-byte operands, and the
    quantization (cast-transpose) of X (forward) and dY (backward).
    `chunks` > 1: the forward and input-gradient GEMMs run as that many GEMMs of m / chunks
    rows (PyTorch's async TP consumes or produces one TP rank's shard at a time,
    stack.async_tp_split_gemms), the input gradient as `bwd_chunks` (default `chunks`); the
    weight gradient stays whole. `parts`: the n columns as separate linears on one input
    (stack.separate_projections: torchtitan's wq, wk, wv), one GEMM each in every pass, and
    under FP8 each casting the input itself. `io`: where the FP8 casts run (FP8.io_casts:
    X gathered over, X out of a norm, dY gathered over)."""
    f = gemm_flops(m, n, k)
    g, eb = (FP8.fp8_device(dev, fp8), 1) if fp8 else (dev, 2)
    bc = chunks if bwd_chunks is None else bwd_chunks
    mc, mb = max(1, m // chunks), max(1, m // bc)
    ns = parts or (n,)
    ops = [Op(name, "gemm", seg, "fwd", chunks * sum(gemm_time(g, mc, p, k, elem_bytes=eb) for p in ns),
              chunks * len(ns), f),
           Op(name, "gemm", seg, "bwd", bc * sum(gemm_time(g, mb, k, p, elem_bytes=eb) for p in ns), bc * len(ns), f),
           Op(name, "gemm", seg, "wgrad", sum(gemm_time(g, k, p, m, elem_bytes=eb) for p in ns), len(ns), f)]
    if fp8:  # ---- FP8 casts (Transformer Engine), each linear casting its own X
        for phase, sec, kern, nbytes, of_x in FP8.io_casts(dev, fp8, m, n, k, *io):
            c = len(ns) if of_x else 1
            ops.append(Op(f"fp8 cast {name}", "memory", seg, phase, c * sec, c * kern, 0.0, c * nbytes))
    return ops


def _mem(dev: Device, name: str, seg: int, op: str, fused: bool, elements: float, recompute: bool = False) -> list[Op]:
    out = []
    for phase, backward in (("fwd", False), ("bwd", True)):
        secs, kernels = op_time(dev, op, fused, elements, backward)
        if kernels:
            m = mem_op(op, fused)
            out.append(Op(name, "memory", seg, phase, secs, kernels, 0.0,
                          (m.bwd_bytes if backward else m.fwd_bytes) * elements, recompute))
    return out


def attention_ops(model: ModelConfig, par: ParallelConfig, dev: Device, stack: Stack, seq_len: int,
                  document_length: int = 0) -> list[Op]:
    """The attention core of one layer (segment 0)."""
    b, hd, cp, tp = par.micro_batch, qk_head_dim(model), par.cp, par.tp
    s_local = seq_len // cp
    heads = model.num_attention_heads // tp
    # With documents of d tokens packed under a document mask (training.document_length) a
    # token attends only its document (Llama 3 §3.2): a fused kernel runs per document.
    attended = document_length if 0 < document_length < seq_len else seq_len
    # QK^T (2 d_qk) and AV (2 d_v) FLOPs for every query x key: 4 hd when d_qk = d_v = hd
    full = 2.0 * b * s_local * attended * (hd + v_head_dim(model)) * heads
    if par.flash_attention:
        executed = 0.5 * full  # causal: the kernels skip the masked half
        blocks = b * heads * math.ceil(s_local / 128)
        # Ring context parallelism (cp_algo "ring") runs the kernel once per K/V chunk that
        # passes round the ring, each call over s/cp keys: the kernel's efficiency is that
        # of the chunk length. All-gather CP (Llama 3) runs one call over all s keys.
        kv_len = attended // cp if (cp > 1 and par.cp_algo == "ring") else attended
        kw = dict(kernel=par.attention_kernel, seq=max(1, kv_len), head_dim=hd, causal=True, blocks=blocks)
        return [Op("attention", "attention", 0, "fwd", attention_time(dev, executed, False, **kw), 1, executed),
                # FlashAttention's backward recomputes the scores: 5 GEMM-like products vs 2 (x2.5)
                Op("attention", "attention", 0, "bwd", attention_time(dev, 2.5 * executed, True, **kw), 1, 2.5 * executed)]
    # Unfused: full s x s scores per head, batched GEMMs around softmax (and dropout).
    n = b * heads
    scores = float(n * s_local * seq_len)
    bmm1, bmm2 = gemm_time(dev, s_local, seq_len, hd, batch=n), gemm_time(dev, s_local, hd, seq_len, batch=n)
    f1, f2 = gemm_flops(s_local, seq_len, hd, n), gemm_flops(s_local, hd, seq_len, n)
    ops = [Op("scores QK^T", "gemm", 0, "fwd", bmm1, 1, f1, recompute=True),
           Op("context AV", "gemm", 0, "fwd", bmm2, 1, f2, recompute=True),
           Op("scores QK^T", "gemm", 0, "bwd", 2 * bmm1, 2, 2 * f1),
           Op("context AV", "gemm", 0, "bwd", 2 * bmm2, 2, 2 * f2)]
    ops += _mem(dev, "softmax", 0, "softmax", stack.softmax == "fused", scores, recompute=True)
    if has_dropout(model):  # GPT-style models train with attention dropout (Megatron default 0.1)
        ops += _mem(dev, "attention dropout", 0, "attn_dropout", True, scores, recompute=True)
    return ops


def layer_ops(model: ModelConfig, par: ParallelConfig, dev: Device, stack: Stack, seq_len: int,
              document_length: int = 0, precision: str = "bf16", grad_precision: str = "fp32",
              tp_gather_s: float = 0.0) -> tuple[Op, ...]:
    """One transformer layer's kernels on one rank. `tp_gather_s`: with sequence-parallel TP
    communication overlapped (PyTorch's async TP, Transformer Engine's userbuffers), the
    idle-network seconds of one all-gather of the micro-batch's activation (simtrain.engine.
    tpalone), what each collective pipelined with a GEMM has to move (`_tp_overlap_waits`)."""
    # the four linears in FP8 (under this recipe; "": bf16), everything else as is
    fp8 = FP8.recipe_of(precision) if FP8.is_fp8(precision) else ""
    tp = par.tp
    b, h, hd = par.micro_batch, model.hidden_size, model.head_dim
    t = b * (seq_len // par.cp)  # tokens this rank processes
    heads = model.num_attention_heads // tp
    kv_heads = max(1, model.num_key_value_heads // tp)
    ffn = model.intermediate_size // tp
    t_sp = t // tp if (par.sequence_parallel and tp > 1) else t  # norms, dropout, residuals
    sp = t // t_sp  # FP8 (FP8.io_casts): the QKV and MLP-up inputs quantized on the sequence shard
    te_norm = stack.norm == "fused"  # ... by the norm kernel (Transformer Engine's LayerNormLinear)
    norm = "rmsnorm" if model.norm == "rmsnorm" else "layernorm"
    fused_norm = stack.norm == "fused"
    # GPT-style: bias + dropout + residual add on each branch; else a plain residual add (a
    # linear bias alone is added in the GEMM epilogue by cuBLAS and costs nothing extra)
    resid = "bias_dropout_add" if has_dropout(model) else "residual"
    fused_resid = stack.bias_dropout_add == "fused"
    # PyTorch's async TP (stack.async_tp_split_gemms): the four GEMMs beside a sequence-dim
    # TP collective run one TP shard at a time (torch/distributed/_symmetric_memory,
    # _pipelined_all_gather_and_consume / _pipelined_produce_and_all2all)
    shards = tp if (stack.async_tp_split_gemms and tp > 1 and par.sequence_parallel and not is_mla(model)) else 1
    # ... except the input gradients of a block's first linears when their reduce-scatter is
    # not fused with them (stack.async_tp_input_grad_fused): whole GEMMs, a plain collective
    unfused_rs = shards > 1 and not stack.async_tp_input_grad_fused
    first_bwd = 1 if unfused_rs else shards
    ops: list[Op] = []
    # segment 0: attention block
    ops += _mem(dev, "input norm", 0, norm, fused_norm, t_sp * h)
    if is_mla(model):
        # multi-head latent attention (simtrain.scenario.models.attention_linears): the down
        # projections whole on every TP rank, run on the sequence shard (Megatron-Core then
        # all-gathers the narrow bottleneck), each followed by its RMSNorm; the up
        # projections split by heads over all tokens
        for name, k, n, split in attention_linears(model)[:-1]:
            down = name.endswith("down")
            ops += _gemm(dev, name, 0, t_sp if down else t, n // tp if split else n, k, fp8)
            if down:
                width = model.q_lora_rank if name == "q down" else model.kv_lora_rank
                ops += _mem(dev, name.replace("down", "norm"), 0, norm, fused_norm, t_sp * width)
        rotated = (heads + 1) * model.qk_rope_head_dim  # Q's rope dims per head and the one shared rope key
    else:
        sep = (heads * hd, kv_heads * hd, kv_heads * hd) if stack.separate_projections else ()
        ops += _gemm(dev, "qkv", 0, t, (heads + 2 * kv_heads) * hd, h, fp8, shards, first_bwd, sep, (sp, te_norm, 1))
        rotated = (heads + kv_heads) * hd
    if model.position_embedding == "rope":
        rope = "rope_complex" if stack.rope == "complex" else "rope"
        ops += _mem(dev, "rotary", 0, rope, stack.rope == "fused", t * rotated)
    if stack.gqa_repeat_kv and not is_mla(model) and kv_heads < heads:
        # K and V expanded to every local query head (stack.gqa_repeat_kv)
        ops += _mem(dev, "repeat kv", 0, "repeat_kv", True, t * heads * hd)
    if stack.attention_unpad and not is_mla(model):
        # Q, K and V gathered out of the padded batch, the output scattered back
        # (stack.attention_unpad): flash-attn's unpad_input three times, pad_input once
        for width in (heads, kv_heads, kv_heads):
            ops += _mem(dev, "attention unpad", 0, "unpad", True, t * width * hd)
        ops += _mem(dev, "attention pad", 0, "pad", True, t * heads * hd)
    ops += attention_ops(model, par, dev, stack, seq_len, document_length)
    ops += _gemm(dev, "out proj", 0, t, h, heads * v_head_dim(model), fp8, shards, io=(1, False, sp))
    ops += _mem(dev, resid.replace("_", "-"), 0, resid, fused_resid, t_sp * h)
    # segment 1: MLP block
    ops += _mem(dev, "post-attn norm", 1, norm, fused_norm, t_sp * h)
    sep = (ffn, ffn) if stack.separate_projections and model.mlp == "gated" else ()
    ops += _gemm(dev, "mlp up", 1, t, (2 if model.mlp == "gated" else 1) * ffn, h, fp8, shards, first_bwd, sep,
                 (sp, te_norm, 1))
    act = "swiglu" if model.mlp == "gated" else ("bias_gelu" if model.bias else "gelu")
    ops += _mem(dev, act.replace("_", "-"), 1, act, stack.activation == "fused", t * ffn)
    ops += _gemm(dev, "mlp down", 1, t, h, ffn, fp8, shards, io=(1, False, sp))
    ops += _mem(dev, resid.replace("_", "-"), 1, resid, fused_resid, t_sp * h)
    if stack.tp_shard_dim_copies and tp > 1 and par.sequence_parallel:
        # DTensor's sequence-dim all-gather and reduce-scatter each copy the full activation
        # once (stack.tp_shard_dim_copies): per block one of each in the forward (gather
        # before the first GEMM, scatter after the last) and in the backward (their adjoints)
        for seg in (0, 1):
            ops += _mem(dev, "tp cat copy", seg, "copy", True, 2 * t * h)
    if shards > 1:
        # before its first shard GEMM, each all-gather-matmul copies the local shard into its
        # symmetric-memory buffer, unoverlapped ("we are giving up the chance to overlap mv
        # ... with the first shard_consumer"): t/TP x h elements, forward (before QKV and MLP
        # up) and backward (the output gradient before out proj's and MLP down's dgrad)
        for seg in (0, 1):
            ops += _mem(dev, "async tp shard copy", seg, "copy", True, t_sp * h)
    if stack.async_tp_reduce and tp > 1 and par.sequence_parallel:
        # async TP sums the received partial chunks of each matmul-reduce-scatter: forward
        # after out proj and mlp down, backward after the input gradients of qkv and mlp up
        # (unless those reduce-scatters are not fused: NCCL reduces them)
        for seg in (0, 1):
            ops += [o for o in _mem(dev, "tp chunk sum", seg, "tp_chunk_sum", True, t * h)
                    if not (unfused_rs and o.phase == "bwd")]
    if unfused_rs and tp_gather_s > 0:
        # the unfused input-gradient reduce-scatter of each block: DTensor's sequence-dim copy
        # of the full gradient, then the collective alone (the same bytes as the block's
        # all-gather, `tp_gather_s`), waited for before the next kernel
        for seg in (0, 1):
            ops += [o for o in _mem(dev, "tp cat copy", seg, "copy", True, t * h) if o.phase == "bwd"]
            ops.append(Op("tp reduce-scatter (unfused)", "comm", seg, "bwd", tp_gather_s, 0))
    if stack.fsdp_copy_out and par.zero == 3 and par.dp * par.cp > 1:
        # FSDP2 copies each all-gathered layer out of its flat buffer into the parameters:
        # before the forward (segment 0) and before the backward (segment 1) of the layer
        w = layer_weight_elements(model, tp)
        ops += [o for o in _mem(dev, "fsdp copy-out", 0, "copy", True, w) if o.phase == "fwd"]
        ops += [o for o in _mem(dev, "fsdp copy-out", 1, "copy", True, w) if o.phase == "bwd"]
    if stack.fsdp_grad_copy_in and par.zero == 3 and par.dp * par.cp > 1:
        # FSDP2's post-backward copies the layer's bf16 gradients into the reduce-scatter
        # buffer in the reduction dtype, the compute stream waiting for it: once, after the
        # layer's backward (segment 0 runs last)
        w = layer_weight_elements(model, tp)
        upcast = grad_precision not in ("bf16", "fp16")
        ops += [o for o in _mem(dev, "fsdp grad copy-in", 0, "upcast_copy" if upcast else "copy", True, w)
                if o.phase == "bwd"]
    if stack.fsdp_flat_grad_copy and par.zero in (2, 3) and par.dp * par.cp > 1:
        # FSDP1's flat gradient: autograd's split_with_sizes_backward concatenates the layer's
        # bf16 view gradients into the FlatParameter's gradient, after its backward
        w = layer_weight_elements(model, tp)
        ops += [o for o in _mem(dev, "fsdp flat grad cat", 0, "copy", True, w) if o.phase == "bwd"]
    if stack.separate_projection_grads and not is_mla(model):
        # autograd sums the input gradients of the separate Q, K, V (two adds) and gate, up
        # (one add) linears over their (gathered) tokens x hidden input: x + y each
        ops += [o for o in _mem(dev, "projection grad sum", 0, "residual", True, t * h) if o.phase == "bwd"] * 2
        if model.mlp == "gated":
            ops += [o for o in _mem(dev, "projection grad sum", 1, "residual", True, t * h) if o.phase == "bwd"]
    if Z3.applies(par, stack):
        # DeepSpeed v0.3.x ZeRO-3: the host's per-rank loop over each tensor's gather and
        # reduce-scatter, with the device drained (simtrain.workload.zero3)
        for (phase, seg), (gathers, reduces) in Z3.calls_per_segment(model, par, stack).items():
            if gathers or reduces:
                ops.append(Op("zero3 list collectives", "host", seg, phase, Z3.host_seconds(par, stack, gathers, reduces), 0))
    if stack.tp_overlap_sms and tp > 1:
        ops = _tp_overlap_sms(ops, stack.tp_overlap_sms, dev.sms)
    if tp > 1 and par.sequence_parallel and tp_gather_s > 0 and not is_mla(model):
        ops += _tp_overlap_waits(ops, tp, tp_gather_s, async_tp=shards > 1, fp8=bool(fp8), unfused_rs=unfused_rs)
    if fp8 and FP8.SCALE_KERNELS[fp8]:  # ---- delayed scaling's amax reduction and scale update after each pass
        ops += [Op("fp8 scale update", "memory", 1, ph, FP8.scale_update_seconds(dev, fp8), FP8.SCALE_KERNELS[fp8])
                for ph in ("fwd", "bwd")]
    return tuple(ops)


# The GEMM each overlapped TP collective hides behind, (name, phase): (GEMM phase, bytes
# factor, pipelined). PyTorch's async TP (torch/distributed/_symmetric_memory,
# _pipelined_all_gather_and_consume / _pipelined_produce_and_all2all) fuses each sequence-
# dim collective with its neighbouring GEMM, forward and input gradient: all-gather before
# QKV and MLP up, reduce-scatter after out proj and MLP down, and their adjoints (the
# gathered input is kept for the weight gradient). Transformer Engine's userbuffers (the
# order of simtrain.scenario.stack.TP_OVERLAP_GEMMS) pipeline qkv/fc1_fprop's all-gather and
# proj/fc2_fprop's reduce-scatter with their GEMMs and proj/fc2_dgrad's all-gather of the
# output gradient with theirs; qkv/fc1_dgrad re-gather the sequence-sharded input beside the
# input-gradient GEMM and qkv/fc1_wgrad reduce-scatter the input gradient beside the weight-
# gradient GEMM, in bulk. Under FP8 the all-gathered GEMM inputs travel cast, 1 byte.
_ASYNC_TP_PAIRS = {(g, ph): (ph, 1.0, True) for g in ("qkv", "out proj", "mlp up", "mlp down") for ph in ("fwd", "bwd")}
_UB_PAIRS = {("qkv", "fwd"): [("fwd", "fp8", True)], ("mlp up", "fwd"): [("fwd", "fp8", True)],
             ("out proj", "fwd"): [("fwd", 1.0, True)], ("mlp down", "fwd"): [("fwd", 1.0, True)],
             ("out proj", "bwd"): [("bwd", "fp8", True)], ("mlp down", "bwd"): [("bwd", "fp8", True)],
             ("qkv", "bwd"): [("bwd", "fp8", False), ("wgrad", 1.0, False)],
             ("mlp up", "bwd"): [("bwd", "fp8", False), ("wgrad", 1.0, False)]}


def pipelined_wait(c: float, g: float, tp: int, pipelined: bool = True) -> float:
    """What a collective of C seconds overlapped with a GEMM of G seconds leaves exposed:
    max(0, C - G (TP-1)/TP) pipelined shard by shard (the first shard's GEMM has nothing to
    hide), max(0, C - G) in bulk (`_tp_overlap_waits`)."""
    return max(0.0, c - g * ((tp - 1) / tp if pipelined else 1.0))


def _tp_overlap_waits(ops: list[Op], tp: int, gather_s: float, async_tp: bool, fp8: bool,
                      unfused_rs: bool = False) -> list[Op]:
    """The transfers an overlapped TP collective cannot hide behind its GEMM. A pipelined
    collective moves one TP shard per step beside the GEMM on the previous one (the local
    shard first): with the GEMM's G seconds and the collective's C (one all-gather of the
    micro-batch's activation, `gather_s`; half under FP8 for cast inputs), G/TP + (TP-1)
    max(C/(TP-1), G/TP) = G + max(0, C - G (TP-1)/TP). A bulk overlap runs the whole
    collective beside the whole GEMM: G + max(0, C - G). A narrow GEMM (GQA's QKV, a small
    model's attention output projection at TP 8) cannot cover its transfer. The wait is
    charged in the phase the collective runs in (the collective's pass); the engine runs
    the collective itself as free (engine.overlap_tp_comm)."""
    seconds = {(o.name, o.phase): o.seconds for o in ops if o.kind == "gemm"}
    pairs = {k: [v] for k, v in _ASYNC_TP_PAIRS.items()} if async_tp else _UB_PAIRS
    if unfused_rs:  # those reduce-scatters run alone (stack.async_tp_input_grad_fused)
        pairs = {k: v for k, v in pairs.items() if k not in (("qkv", "bwd"), ("mlp up", "bwd"))}
    out = []
    for (name, phase), overlaps in pairs.items():
        for gemm_phase, factor, pipelined in overlaps:
            g = seconds.get((name, gemm_phase))
            if g is None:
                continue
            c = gather_s * (0.5 if factor == "fp8" and fp8 else 1.0)
            wait = pipelined_wait(c, g, tp, pipelined)
            if wait > 0:
                seg = 0 if name in ("qkv", "out proj") else 1
                out.append(Op(f"tp overlap wait: {name}", "comm", seg, phase, wait, 0))
    return out


def layer_weight_elements(model: ModelConfig, tp: int) -> float:
    """Weight elements of one dense layer's linears on a TP rank (the attention linears of
    simtrain.scenario.models.attention_linears and the MLP; norms are negligible)."""
    att = sum(k * (n // tp if split else n) for _, k, n, split in attention_linears(model))
    ffn = model.intermediate_size // tp
    return float(att + (3 if model.mlp == "gated" else 2) * ffn * model.hidden_size)


# simtrain's (GEMM, phase) -> NeMo's userbuffers name (simtrain.scenario.stack.TP_OVERLAP_GEMMS)
_UB_NAMES = {("qkv", "fwd"): "qkv_fprop", ("qkv", "bwd"): "qkv_dgrad", ("qkv", "wgrad"): "qkv_wgrad",
             ("out proj", "fwd"): "proj_fprop", ("out proj", "bwd"): "proj_dgrad",
             ("mlp up", "fwd"): "fc1_fprop", ("mlp up", "bwd"): "fc1_dgrad", ("mlp up", "wgrad"): "fc1_wgrad",
             ("mlp down", "fwd"): "fc2_fprop", ("mlp down", "bwd"): "fc2_dgrad"}


def _tp_overlap_sms(ops: list[Op], sms_taken: tuple[int, ...], sms: int) -> list[Op]:
    """Each GEMM a TP collective overlaps (Transformer Engine userbuffers) runs on the SMs the
    communication kernels leave it: time x SMs / (SMs - n). Pipelined overlaps reserve them
    for the whole GEMM (set_sm_margin); bulk ones hold them while the collective runs, taken
    here as the whole GEMM too (an upper bound)."""
    taken = dict(zip(TP_OVERLAP_GEMMS, sms_taken))
    out = []
    for o in ops:
        n = taken.get(_UB_NAMES.get((o.name, o.phase), ""), 0) if o.kind == "gemm" else 0
        out.append(dataclasses.replace(o, seconds=o.seconds * sms / (sms - n)) if 0 < n < sms else o)
    return out


def head_ops(model: ModelConfig, par: ParallelConfig, dev: Device, stack: Stack, seq_len: int) -> tuple[Op, ...]:
    """Last stage: final norm, output projection (vocab-parallel over TP), cross-entropy."""
    t = par.micro_batch * seq_len // par.cp
    t_sp = t // par.tp if (par.sequence_parallel and par.tp > 1) else t
    v = padded_vocab(model.vocab_size, par.tp, stack.vocab_pad_multiple) // par.tp
    norm = "rmsnorm" if model.norm == "rmsnorm" else "layernorm"
    return tuple(_mem(dev, "final norm", 1, norm, stack.norm == "fused", t_sp * model.hidden_size)
                 + _gemm(dev, "output", 1, t, v, model.hidden_size)
                 + _mem(dev, "cross-entropy", 1, "cross_entropy", stack.cross_entropy == "fused", t * v)
                 + train_metric_ops(dev, stack, t * v))


def padded_vocab(vocab: int, tp: int, multiple: int) -> int:
    """The vocabulary padded to a multiple of `multiple` x TP (stack.vocab_pad_multiple):
    GPT-2's 50,257 at 128 x TP4 = 512 -> 50,688, 12,672 columns per TP rank."""
    m = max(1, multiple) * max(1, tp)
    return -(-vocab // m) * m


def train_metric_ops(dev: Device, stack: Stack, logits: float) -> list[Op]:
    """The trainer's own cross-entropy passes over a micro-batch's logits outside the loss
    (stack.train_metric_ce_passes: Composer's training metrics), each the eager fp32
    F.cross_entropy forward (cast, log-softmax, NLL) under no_grad, after the backward."""
    n = stack.train_metric_ce_passes
    if n <= 0 or logits <= 0:
        return []
    secs, kernels = op_time(dev, "cross_entropy", False, logits, False)
    return [Op("train metrics", "memory", 1, "bwd", n * secs, n * kernels, 0.0,
               n * mem_op("cross_entropy", False).fwd_bytes * logits)]


def embed_ops(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int) -> tuple[Op, ...]:
    """First stage: token embedding lookup (and its gradient scatter-add)."""
    t = par.micro_batch * seq_len // par.cp
    return tuple(_mem(dev, "embedding", 0, "embedding", True, t * model.hidden_size))


def seconds(ops: tuple[Op, ...] | list[Op], phase: str, segment: int | None = None) -> float:
    return sum(o.seconds for o in ops if o.phase == phase and (segment is None or o.segment == segment))


def kernels(ops: tuple[Op, ...] | list[Op], phase: str) -> int:
    return sum(o.kernels for o in ops if o.phase == phase)
