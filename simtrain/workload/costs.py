"""Per-layer work of one micro-batch on one tensor-parallel rank: compute durations,
tensor-parallel collective sizes, model and hardware FLOPs. Arithmetic follows
Megatron-LM's layer (Shoeybi et al. 2019; Korthikanti et al. 2022 for sequence
parallelism and selective recomputation).

A layer's forward is two compute segments, each followed by a TP collective:
    [norm, QKV, attention, O-proj] -> all-reduce (or reduce-scatter; all-gather before)
    [norm, MLP up, activation, MLP down] -> all-reduce (or reduce-scatter; all-gather before)
with buffer b*s*h*2 bytes (bf16 activations of the micro-batch's local tokens). The
backward mirrors it. Sequence parallelism replaces each all-reduce by a reduce-scatter
plus an all-gather of the same buffer (same ring bytes) and splits norms and residual
work over TP ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.hardware.devices import Device
from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.models import ModelConfig
from simtrain.workload.compute import attention_time, gemm_flops, gemm_time, memory_time

BF16 = 2


@dataclass(frozen=True)
class LayerCost:
    fwd: tuple[float, float]  # compute seconds of the two forward segments
    bwd_input: tuple[float, float]  # input-gradient compute of the two backward segments
    bwd_weight: float  # weight-gradient compute (separate W action in zero-bubble schedules)
    recompute: float  # extra forward work before the backward (recompute = full/selective)
    tp_bytes: float  # buffer of each TP collective (0 when tp == 1)
    model_flops: float  # fwd+bwd model FLOPs of this layer for this micro-batch on this rank
    recompute_flops: float  # extra FLOPs executed because of recomputation
    cp_bytes: float = 0.0  # K/V buffer all-gathered over the CP group per layer (full sequence)
    attn_fwd: float = 0.0  # attention-core compute inside fwd[0] (what ring CP can hide behind)
    attn_bwd: float = 0.0  # attention-core compute inside bwd_input[0]


@dataclass(frozen=True)
class EndCost:
    """Embedding (first stage) or output layer + loss (last stage)."""

    fwd: float
    bwd_input: float
    bwd_weight: float
    model_flops: float


def _gemm_fwd_bwd(dev: Device, m: int, n: int, k: int) -> tuple[float, float, float, float]:
    """(forward, input-grad, weight-grad) times and fwd FLOPs of Y[m,n] = X[m,k] W[k,n]."""
    return gemm_time(dev, m, n, k), gemm_time(dev, m, k, n), gemm_time(dev, k, n, m), gemm_flops(m, n, k)


def layer_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, flash_attention: bool = True,
               document_length: int = 0) -> LayerCost:
    tp, cp = par.tp, par.cp
    b, h, hd = par.micro_batch, model.hidden_size, model.head_dim
    s_local = seq_len // cp  # tokens of one sequence on this CP rank
    t = b * s_local  # tokens this rank processes
    heads = model.num_attention_heads // tp
    kv_heads = max(1, model.num_key_value_heads // tp)
    ffn = model.intermediate_size // tp
    t_sp = t // tp if (par.sequence_parallel and tp > 1) else t  # tokens for norms/residuals

    gemms = [
        (t, (heads + 2 * kv_heads) * hd, h),  # QKV
        (t, h, heads * hd),  # O projection
        (t, (2 if model.mlp == "gated" else 1) * ffn, h),  # MLP up (gate+up for SwiGLU)
        (t, h, ffn),  # MLP down
    ]
    g = [_gemm_fwd_bwd(dev, *x) for x in gemms]

    # attention core: QK^T and AV, 2*2*s_q*s_kv*hd per head; causal kernels skip ~half.
    # With documents of d tokens packed under a document mask (training.document_length) a
    # token attends only its document: s_kv = d in the model FLOPs (as in models.stats), and
    # a FlashAttention kernel skips the cross-document blocks.
    attended = document_length if 0 < document_length < seq_len else seq_len
    att_flops_full = 4.0 * b * s_local * attended * hd * heads
    if flash_attention:
        executed = 0.5 * att_flops_full
        att_fwd = attention_time(dev, executed, backward=False)
        att_bwd = attention_time(dev, 2.5 * executed, backward=True)  # FA bwd: 5 matmuls vs 2
    else:
        bmm1 = gemm_time(dev, s_local, seq_len, hd, batch=b * heads)
        bmm2 = gemm_time(dev, s_local, hd, seq_len, batch=b * heads)
        scores = b * heads * s_local * seq_len * BF16
        # fused scale-mask-softmax reads and writes the scores; dropout writes a mask and applies it
        soft = memory_time(dev, 2 * scores, 1) + memory_time(dev, 2.5 * scores, 1)
        att_fwd = bmm1 + bmm2 + soft
        att_bwd = 2 * (bmm1 + bmm2) + 2 * soft

    E = BF16
    norm_b = 2 * t_sp * h * E
    resid_b = 3 * t_sp * h * E
    rope_b = 2 * t * (heads + kv_heads) * hd * E if model.position_embedding == "rope" else 0
    act_b = (3 if model.mlp == "gated" else 2) * t * ffn * E
    drop_b = 4 * t_sp * h * E if model.bias else 0  # bias-dropout-add (GPT)
    seg1_mem = memory_time(dev, norm_b + resid_b + rope_b + drop_b, 4)
    seg2_mem = memory_time(dev, norm_b + resid_b + act_b + drop_b, 4)

    fwd1 = seg1_mem + g[0][0] + att_fwd + g[1][0]
    fwd2 = seg2_mem + g[2][0] + g[3][0]
    bin1 = 2 * seg1_mem + g[0][1] + att_bwd + g[1][1]
    bin2 = 2 * seg2_mem + g[2][1] + g[3][1]
    bw = sum(x[2] for x in g)

    gemm_f = sum(x[3] for x in g)
    model_flops = 3 * gemm_f + 3 * att_flops_full  # fwd + 2x bwd, PaLM convention
    if par.recompute == "full":
        recompute, recompute_flops = fwd1 + fwd2, gemm_f + att_flops_full
    elif par.recompute == "selective":
        # Korthikanti et al. 2022: recompute only the attention core (QK^T, softmax, AV)
        recompute, recompute_flops = (0.0, 0.0) if flash_attention else (att_fwd, att_flops_full)
    else:
        recompute, recompute_flops = 0.0, 0.0
    tp_bytes = float(t * h * E) if tp > 1 else 0.0
    # Context parallelism as Llama 3 did it (§3.3.2): each CP rank holds 2 chunks of s/(2cp)
    # tokens (causal load balance) and all-gathers K and V of the whole sequence before
    # attention: 2 (K, V) * b * s * kv_heads_local * head_dim * 2 bytes; the backward
    # reduce-scatters dK, dV of the same size. GQA keeps this small (8 KV heads of 128).
    cp_bytes = float(2 * b * seq_len * kv_heads * hd * E) if cp > 1 else 0.0
    return LayerCost((fwd1, fwd2), (bin1, bin2), bw, recompute, tp_bytes, model_flops, recompute_flops,
                     cp_bytes, att_fwd, att_bwd)


def embedding_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int) -> EndCost:
    t = par.micro_batch * seq_len // par.cp
    gather = memory_time(dev, 2 * t * model.hidden_size * BF16, 1)
    return EndCost(gather, 0.0, 2 * gather, 0.0)


def head_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int) -> EndCost:
    """Final norm, output projection (vocab-parallel over TP) and cross-entropy in fp32."""
    t = par.micro_batch * seq_len // par.cp
    v = model.vocab_size // par.tp
    f, bi, bw_, flops = _gemm_fwd_bwd(dev, t, v, model.hidden_size)
    ce = memory_time(dev, 3 * t * v * 4, 3)  # logits to fp32, softmax, loss
    norm = memory_time(dev, 2 * t * model.hidden_size * BF16, 1)
    return EndCost(f + ce + norm, bi + ce + 2 * norm, bw_, 3 * flops)


def optimizer_time(dev: Device, params_on_rank: float) -> float:
    """Mixed-precision Adam, memory-bound: ~36 bytes of HBM traffic per parameter
    (read bf16 param, fp32 grad, master, m, v; write master, m, v, bf16 param; plus the
    gradient-norm pass), Megatron's fused multi-tensor kernels."""
    return memory_time(dev, 36.0 * params_on_rank, 8)
