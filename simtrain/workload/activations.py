"""Activation bytes one transformer layer (and the embedding / output layer) keeps for the
backward pass, per micro-batch, on one rank: Korthikanti et al. 2022, "Reducing
Activation Recomputation in Large Transformer Models" (arXiv:2205.05198), §4, term by term
(see `layer_activation_bytes`), adapted to SwiGLU, GQA, multi-head latent attention,
models without dropout, FlashAttention, context parallelism, unfused kernels and Megatron-
Core's selective recomputation modules. simtrain.workload.memory adds them up per rank."""

from __future__ import annotations

from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.models import ModelConfig, has_dropout, is_mla, qk_head_dim, v_head_dim
from simtrain.workload import recompute as R


def layer_activation_bytes(
    model: ModelConfig,
    seq_len: int,
    micro_batch: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
    flash_attention: bool = True,
    cp: int = 1,
    unfused_norm: bool = False,
    unfused_activation: bool = False,
    recompute_modules: tuple[str, ...] = (),
    norm_saves_output: bool = False,
) -> float:
    """Bytes one transformer layer keeps for the backward pass, per micro-batch, on one rank.

    Korthikanti et al. 2022 §4.1 term by term (s*b tokens, 2-byte values, 1-byte masks);
    each line is "per token" and is multiplied by the rank's tokens b*s/cp at the end.
    For a GPT layer (MLP 4h, heads = key/value heads, dropout) the sum is 34*h + 5*a*s.
    """
    if recompute not in ("none", "selective", "op-selective", "full"):
        raise SimtrainError(f"parallel.recompute = {recompute!r}: not a recomputation mode; "
                            "use none, selective, op-selective or full")
    h = model.hidden_size
    hd = model.head_dim or h // model.num_attention_heads
    a = model.num_attention_heads
    kv_heads = model.num_key_value_heads or a
    q = a * hd  # query width (= h for every catalog model)
    kv = kv_heads * hd  # key (and value) width: h / (a / kv_heads) with GQA
    f = model.intermediate_size
    dropout = has_dropout(model)  # GPT-style models train with dropout; Llama-style models do not
    t = max(1, tp)
    sp = sequence_parallel and t > 1
    tokens = micro_batch * seq_len / cp  # tokens of this CP rank
    s_kv = seq_len  # keys each query attends to (K/V all-gathered over CP)

    if recompute == "full":
        # Only the layer input is checkpointed: 2*s*b*h bytes (Korthikanti Table 2),
        # kept sequence-parallel-sharded (/t) when SP is on.
        return tokens * 2 * h / (t if sp else 1)

    if recompute == "op-selective":
        # torchtitan's op-level policy (simtrain.workload.costs.op_selective_gemm_shares)
        # keeps the block input 2h and the outputs of the saved matmuls and of SDPA; all else
        # is recomputed from them. Saved mm outputs: wq 2q, wv 2kv, w1 2f, w2 2h (gated MLP;
        # plain: w1 2f, w2 recomputed); SDPA: its output 2q and fp32 log-sum-exp 4 per head.
        kv_local = hd if kv_heads < t else kv / t
        replicated = 2 * h + (2 * h if model.mlp == "gated" else 0)
        split = 4 * q / t + 2 * kv_local + 2 * f / t + 4.0 * a / t
        return tokens * (replicated / (t if sp else 1) + split)

    # Tensors of width h that every TP rank holds in full unless SP shards them (/t):
    #   norm 1 input 2h + QKV GEMM input (norm 1 output) 2h + norm 2 input 2h
    #   + MLP up GEMM input (norm 2 output) 2h                                  = 8h
    #   + dropout masks after attention and after the MLP, 1 byte each          = 2h (GPT)
    # GPT: 10h, Korthikanti's "10" (4 for the two LayerNorms + 2 + 2 + 1 + 1).
    replicated = 8 * h + (2 * h if dropout else 0)
    # An unfused RMSNorm (eager ops, as Hugging Face's LlamaRMSNorm) keeps what autograd
    # saves of its ops: the fp32 copy of its input (4 B) and the normalized bf16 tensor
    # before the weight multiply (2 B), twice per layer: +12h. A fused kernel saves its
    # input (counted above) and one fp32 scale per token.
    if unfused_norm and model.norm == "rmsnorm":
        replicated += 12 * h
    # Selective recomputation's modules (simtrain.workload.recompute; Megatron-Core's
    # --recompute-modules): layernorm drops the two norm outputs (the QKV and MLP-up GEMM
    # inputs, 4h, and an unfused norm's intermediates), mlp the MLP's inner tensors (it
    # keeps its input), mla_up_proj Q, K, V and the bottleneck norms' outputs.
    mods = R.modules(recompute, recompute_modules)
    if "layernorm" in mods:
        replicated -= 4 * h + (12 * h if unfused_norm and model.norm == "rmsnorm" else 0)
    elif norm_saves_output and not unfused_norm:
        # A memory-efficient norm (Stack.norm_saves = "output") keeps its output, the GEMM
        # input counted above, in place of its input: the two norm inputs, 2h + 2h, go.
        # (Recomputing the norms instead keeps the inputs to recompute from: as above.)
        replicated -= 4 * h
    # Tensors split over TP heads / MLP columns (always /t):
    #   Q 2q and K 2*kv saved for QK^T, V 2*kv saved for scores x V,
    #   O-projection input (attention context) 2q                  MHA: 8h; GQA: 4q + 4kv
    #   MLP: plain GELU saves its input 2f and the down-projection input 2f = 4f (= 16h);
    #        SwiGLU saves gate and up outputs 2f + 2f and the down input 2f = 6f
    # GPT: 8h + 16h = 24h, Korthikanti's "24/t". Llama 3 405B (q = h, kv = h/16,
    # f = 3.25h): 4h + 0.25h + 19.5h = 23.75h.
    # With GQA and tp > key/value heads, each rank holds one replicated K/V head.
    # Multi-head latent attention (d_qk = 192, d_v = 128 for DeepSeek-V3): Q and K of d_qk,
    # V and the O-projection input of d_v per head, and what its bottlenecks keep, whole on
    # every TP rank (sharded like the norms under sequence parallelism, since Megatron-Core
    # runs the down projections on the sequence shard): the q and kv down-projection
    # outputs (q_lora, kv_lora + rope) and their RMSNorm outputs, the up-projections' inputs.
    dqk, dv = qk_head_dim(model), v_head_dim(model)
    kv_local = (dqk + dv) / 2 if kv_heads < t else kv / t * (dqk + dv) / (2 * hd)
    split = 2 * a * (dqk + dv) / t + 4 * kv_local + (4 * f if model.mlp == "plain" else 6 * f) / t
    if is_mla(model):
        replicated += 4 * model.q_lora_rank + 2 * (model.kv_lora_rank + model.qk_rope_head_dim) + 2 * model.kv_lora_rank
        if "mla_up_proj" in mods:  # only the O-projection input (2 d_v per head) and the down outputs stay
            split -= 2 * a * dqk / t + 4 * kv_local
            replicated -= 2 * model.q_lora_rank + 2 * model.kv_lora_rank
    if "mlp" in mods:
        split -= (4 * f if model.mlp == "plain" else 6 * f) / t + (2 * f / t if unfused_activation and model.mlp == "gated" else 0)
    # An unfused SwiGLU (F.silu(g) * u) also keeps silu(g) for the multiply's backward: +2f.
    if unfused_activation and model.mlp == "gated":
        split += 2 * f / t
    # Attention scores, per query token and head (/t: heads are split over TP):
    #   softmax output 2*s_kv + dropout mask s_kv + dropout output 2*s_kv = 5*s_kv (GPT);
    #   without dropout only the softmax output, 2*s_kv.
    # Selective recomputation drops the term (the core attention is recomputed);
    # FlashAttention never materializes it and saves only the fp32 log-sum-exp per row
    # (4 bytes per head) next to Q, K, V and the output already counted above.
    if flash_attention:
        scores = 4.0 * a / t
    elif "core_attn" in mods:
        scores = 0.0
    else:
        scores = (5 if dropout else 2) * a * s_kv / t
    return tokens * (replicated / (t if sp else 1) + split + scores)


def embedding_activation_bytes(model: ModelConfig, seq_len: int, micro_batch: int, tp: int,
                               sequence_parallel: bool, cp: int = 1) -> float:
    """First stage: the embedding dropout mask, 1 byte x h per token (Korthikanti §4.3),
    /t with SP. The embedding output itself is the first layer's input, counted there."""
    t = max(1, tp)
    tokens = micro_batch * seq_len / cp
    return tokens * (model.hidden_size if has_dropout(model) else 0) / (t if sequence_parallel and t > 1 else 1)


def head_activation_bytes(model: ModelConfig, seq_len: int, micro_batch: int, tp: int,
                          sequence_parallel: bool, cp: int = 1, loss_logit_bytes: float = 6.0) -> float:
    """Last stage (Korthikanti §4.3): final-norm input 2h and output-projection input 2h
    (/t with SP), and what the loss keeps for its backward over the vocabulary shard: the
    fp32 softmax, 4*V/t, or less for a loss that keeps only its bf16 logits
    (`Stack.loss_logit_bytes`; the rest of it is transient, `loss_transient_bytes`)."""
    t = max(1, tp)
    tokens = micro_batch * seq_len / cp
    sp = sequence_parallel and t > 1
    return tokens * (4 * model.hidden_size / (t if sp else 1) + min(4.0, loss_logit_bytes) * model.vocab_size / t)


def loss_transient_bytes(model: ModelConfig, tokens: float, tp: int, loss_logit_bytes: float = 6.0) -> float:
    """The loss's logits-sized buffers beyond what it keeps for the backward, alive only
    while it runs: Megatron's bf16 logits before the fp32 cast (2*V/t), or eager
    PyTorch's bf16 logits and fp32 copy beside log_softmax's output (6*V/t)."""
    return tokens * max(0.0, loss_logit_bytes - 4.0) * model.vocab_size / max(1, tp)
