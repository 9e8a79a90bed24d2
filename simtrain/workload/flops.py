"""Parameter counts and model FLOPs per token of a model shape (PaLM's convention for MFU,
Megatron-LM SC21's for its published hardware FLOPs).

Mixture of experts: a token runs through its top-k routed experts, the shared experts and
the router only, so model FLOPs count the *active* parameters (6 x N_active, as
DeepSeek-V3 and Mixtral report "active parameters"); the parameter count is the total."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simtrain.scenario.models import ModelConfig, attention_linears, is_mla, moe_layers, qk_head_dim, v_head_dim


@dataclass(frozen=True)
class ModelStats:
    """Counts derived from a ModelConfig. All per token unless said otherwise."""

    params: float  # total parameters
    params_per_layer: float
    embedding_params: float  # input embedding (+ learned positions)
    head_params: float  # output projection (0 if tied: shares the embedding)
    matmul_params_per_layer: float  # weights used in matmuls per layer (MoE: per MoE layer, all experts)
    model_flops_per_token: float  # training FLOPs per token, PaLM convention (no recomputation)
    formula: str
    active_params: float = 0.0  # parameters one token runs through (= params for dense models)
    expert_params_per_layer: float = 0.0  # routed experts' weights of one MoE layer (all experts)
    dense_params_per_layer: float = 0.0  # a dense (first_k_dense_replace) layer of an MoE model


def _layer_matmul_params(m: ModelConfig) -> tuple[float, float]:
    """(attention, mlp) weight-matrix parameters of one layer."""
    attn = sum(i * o for _, i, o, _ in attention_linears(m))  # Wq, Wk, Wv, Wo (MLA: q_a, q_b, kv_a, kv_b, o)
    mlp = (3 if m.mlp == "gated" else 2) * m.hidden_size * m.intermediate_size
    return float(attn), float(mlp)


def attended_length(seq_len: int, document_length: int = 0, sliding_window: int = 0) -> float:
    """T of the attention term: the keys per query of a full T x T score matrix whose causal
    half is the work done (PaLM's convention: causal attention over s tokens is T = s).

    A document mask (documents of d tokens) gives T = d. A sliding window of w tokens over
    a causal context of D tokens (D = d or s) leaves each query at most w keys: the pairs
    are sum_i min(i, w) ~ D w - w^2 / 2 per D tokens instead of D^2 / 2, so T = 2 w - w^2 / D
    (= D at w = D; about 2 w for w << D)."""
    context = document_length if 0 < document_length < seq_len else seq_len
    w = sliding_window
    if 0 < w < context:
        return 2.0 * w - w * w / context
    return float(context)


def attention_width(m: ModelConfig) -> float:
    """PaLM's H*Q of the attention term 12*L*H*Q*T: QK^T does 2*T*H*d_qk and AV 2*T*H*d_v
    FLOPs per query forward, so H*Q = H*(d_qk + d_v)/2 (= the query width when d_qk = d_v;
    multi-head latent attention scores with 192 dims and returns 128)."""
    return m.num_attention_heads * (qk_head_dim(m) + v_head_dim(m)) / 2


def moe_mlp_params(m: ModelConfig) -> tuple[float, float, float]:
    """(all routed experts, active routed experts, shared experts + router) weights of one
    MoE layer's MLP."""
    per = (3 if m.mlp == "gated" else 2) * m.hidden_size * m.moe_intermediate_size
    shared = (3 if m.mlp == "gated" else 2) * m.hidden_size * m.shared_expert_intermediate_size
    return float(m.num_experts * per), float(m.num_experts_per_tok * per), float(shared + m.hidden_size * m.num_experts)


def stats(m: ModelConfig, seq_len: int, document_length: int = 0) -> ModelStats:
    h = m.hidden_size
    attn, mlp = _layer_matmul_params(m)
    if m.num_experts:
        return _moe_stats(m, seq_len, document_length)
    q = m.num_attention_heads * m.head_dim
    kv = m.num_key_value_heads * m.head_dim
    bias = (q + 2 * kv + h + (2 if m.mlp == "gated" else 1) * m.intermediate_size + h) if m.bias else 0
    norms = (2 if m.norm == "layernorm" else 1) * 2 * h
    if is_mla(m):  # RMSNorms on the q and kv bottlenecks
        norms += m.q_lora_rank + m.kv_lora_rank
    per_layer = attn + mlp + bias + norms
    embed = m.vocab_size * h + (m.max_position_embeddings * h if m.position_embedding == "learned" else 0)
    head = 0 if m.tie_word_embeddings else m.vocab_size * h
    final_norm = (2 if m.norm == "layernorm" else 1) * h
    total = m.num_hidden_layers * per_layer + embed + head + final_norm
    # Model FLOPs per token, PaLM (Chowdhery et al. 2022, Appendix B): 6N + 12*L*H*Q*T,
    # N = parameters in matmuls (every layer's weights plus the output projection, which runs
    # even when tied to the embedding; the embedding lookup is no matmul), H*Q = query width,
    # T = sequence length. 6 = 2 (multiply-add) x 3 (forward, input-grad, weight-grad).
    # The attention term counts the full T x T score matrix, as PaLM and Megatron do,
    # although a causal kernel skips about half of it. Under a document mask a token attends
    # only its document, so T is the document length (training.document_length); under a
    # sliding window T counts the keys in the window (attended_length).
    attended = attended_length(seq_len, document_length, m.sliding_window)
    n_mm = m.num_hidden_layers * (attn + mlp) + m.vocab_size * h
    flops = 6 * n_mm + 12 * m.num_hidden_layers * attention_width(m) * attended
    return ModelStats(
        params=float(total),
        params_per_layer=float(per_layer),
        embedding_params=float(embed),
        head_params=float(head),
        matmul_params_per_layer=attn + mlp,
        model_flops_per_token=float(flops),
        formula="6*N_matmul + 12*L*H*Q*T per token (PaLM, Chowdhery et al. 2022, App. B)"
        + (f"; T = {attended:,.0f} keys per query under the {m.sliding_window:,}-token sliding window (2w - w^2/context)"
           if attended < (document_length if 0 < document_length < seq_len else seq_len) else ""),
        active_params=float(total),
        dense_params_per_layer=float(per_layer),
    )


def _moe_stats(m: ModelConfig, seq_len: int, document_length: int) -> ModelStats:
    """A mixture-of-experts model: its MoE layers (models.moe_layer_flags), the rest dense."""
    dense = stats(dataclasses.replace(m, num_experts=0), seq_len, document_length)
    attn, mlp = _layer_matmul_params(m)
    experts, active, shared = moe_mlp_params(m)
    n_moe = moe_layers(m)
    n_dense = m.num_hidden_layers - n_moe
    moe_layer = dense.params_per_layer - mlp + experts + shared
    total = dense.params + n_moe * (moe_layer - dense.params_per_layer)
    active_total = dense.params + n_moe * (active + shared - mlp)
    flops = dense.model_flops_per_token + 6 * n_moe * (active + shared - mlp)
    return ModelStats(
        params=float(total),
        params_per_layer=float(moe_layer),
        embedding_params=dense.embedding_params,
        head_params=dense.head_params,
        matmul_params_per_layer=attn + experts + shared,
        model_flops_per_token=float(flops),
        formula=(f"6*N_active + 12*L*H*Q*T per token, N_active = {active_total / 1e9:.1f}B of {total / 1e9:.1f}B "
                 f"parameters (top-{m.num_experts_per_tok} of {m.num_experts} experts"
                 + (f" + {m.num_shared_experts} shared" if m.num_shared_experts else "")
                 + (f", {n_dense} dense layers" + (" first" if n_dense == m.first_k_dense_replace else "") if n_dense else "")
                 + "; PaLM, Chowdhery et al. 2022, App. B)"
                 + (f"; {m.num_nextn_predict_layers} multi-token-prediction module(s) simulated, not in model FLOPs"
                    if m.num_nextn_predict_layers else "")),
        active_params=float(active_total),
        expert_params_per_layer=experts,
        dense_params_per_layer=dense.params_per_layer,
    )


def megatron_flops_per_token(m: ModelConfig, seq_len: int) -> float:
    """Narayanan et al. 2021 (SC21) eq. 3 per token: 96*L*h^2*(1 + s/6h + V/16Lh) / ... .

    The paper's F = 96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h)) counts full activation
    recomputation (4 passes of 24*h^2 per layer per token), so it is a hardware-FLOPs basis.
    Per token: 96*l*h^2 + 16*l*h*s + 6*h*V.
    """
    L, h, V = m.num_hidden_layers, m.hidden_size, m.vocab_size
    return 96 * L * h * h * (1 + seq_len / (6 * h) + V / (16 * L * h))
