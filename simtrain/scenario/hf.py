"""Hugging Face `config.json` -> [model] keys (`model.hf_config = "path/config.json"`).

Decoder-only transformers: Llama (1/2/3), Mistral, Qwen2/Qwen3, OLMo 2, Phi-3 and GPT-NeoX
style configs, and the mixture-of-experts ones of Mixtral, Qwen2-MoE, Qwen3-MoE, Llama 4
and DeepSeek-V2/V3. The mapping:

    num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
    num_key_value_heads, vocab_size, head_dim, tie_word_embeddings   copied as they are
    hidden_act  silu/swiglu -> mlp = "gated" (SwiGLU: gate, up, down)
                gelu*/relu  -> mlp = "plain" (up, down)
    rms_norm_eps -> norm = "rmsnorm"; layer_norm_eps -> norm = "layernorm"
    attention_bias / mlp_bias (Llama), GPT-NeoX (biases on every linear) -> bias
    rotary embeddings everywhere (position_embedding = "rope")

    sliding_window (Mistral: each token attends to at most that many tokens) -> sliding_window:
                the attention work and model FLOPs count the window when the sequence is
                longer (simtrain.workload.flops.attended_length); `null` means none. Qwen2's
                is used only with use_sliding_window = true, and then only on the layers past
                max_window_layers: such a per-layer mix is refused with one line.

Mixture of experts:
    num_local_experts (Mixtral) / num_experts (Qwen2-MoE) / n_routed_experts (DeepSeek)
                                                   -> num_experts
    num_experts_per_tok                            -> num_experts_per_tok (top-k)
    moe_intermediate_size (Qwen2-MoE, DeepSeek; Mixtral's experts are intermediate_size)
    shared_expert_intermediate_size (Qwen2-MoE), n_shared_experts (DeepSeek)
    first_k_dense_replace, n_group, topk_group (DeepSeek)   copied
    decoder_sparse_step (Qwen2/3-MoE), interleave_moe_layer_step (Llama 4) -> moe_layer_step:
                experts on layer i when (i + 1) % step == 0 (Llama 4 Maverick: every second)
    mlp_only_layers (Qwen), moe_layer_freq (DeepSeek, counted from first_k_dense_replace),
    moe_layers (Llama 4, when listed)              -> mlp_only_layers (the dense layers)
Llama 4 (Llama4ForConditionalGeneration: its text_config is the language model): experts
and the shared expert are intermediate_size wide, dense layers intermediate_size_mlp; its
chunked local attention (attention_chunk_size, on three of four layers) and the layers
without rotary embeddings are not modelled: exact for sequences up to the chunk (8,192).
Qwen3, Qwen3-MoE, OLMo 2 and Phi-3 read as Llama-style configs (their per-head q/k norms
are a few thousand parameters and a small memory-bound kernel, not modelled).
DeepSeek's multi-head latent attention: q_lora_rank, kv_lora_rank, qk_nope_head_dim,
qk_rope_head_dim, v_head_dim copied (DeepSeek-V2 ships qk_nope 128, rope 64, v 128).

Accepted but not modelled: `use_parallel_residual` (GPT-NeoX: same GEMMs and FLOPs, only
the order of the residual adds differs), `rope_scaling`, Qwen2's q/k/v biases (a few
thousand parameters per layer). State-space models fail with one line naming the key
that says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simtrain.scenario.errors import SimtrainError

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "GPTNeoXForCausalLM": "gpt_neox",
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "Olmo2ForCausalLM": "olmo2",
    "Phi3ForCausalLM": "phi3",
    "Llama4ForCausalLM": "llama4_text",
    "Llama4ForConditionalGeneration": "llama4",
}
MODEL_TYPES = set(ARCHITECTURES.values())
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")  # routed experts, by family
MOE_INTS = ("num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size", "n_shared_experts",
            "first_k_dense_replace", "n_group", "topk_group", "decoder_sparse_step", "moe_layer_freq",
            "interleave_moe_layer_step", "intermediate_size_mlp")
GATED_ACTS = ("silu", "swiglu", "swish")
PLAIN_ACTS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "gelu_python")
COPIED = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
FIELD = "model.hf_config"


def read_hf_config(path: str) -> dict[str, Any]:
    """Load and check one config.json; return [model] keys for simtrain."""
    p = Path(path)
    try:
        odd = p.exists() and not p.is_file()  # a folder, FIFO or device would block or fail on reading
    except OSError as e:  # e.g. a name over the file system's 255 bytes
        raise SimtrainError(f"{FIELD} = {path!r}: cannot read it ({e.strerror}); give the path of a Hugging Face "
                            "config.json") from None
    if odd:
        raise SimtrainError(f"{FIELD} = {path!r}: not a regular file; give the path of a Hugging Face config.json")
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise SimtrainError(f"{FIELD} = {path!r}: cannot read it ({e.strerror}); give the path of a Hugging Face config.json") from None
    except json.JSONDecodeError as e:
        raise SimtrainError(f"{FIELD} = {path!r}: not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"{FIELD} = {path!r}: not UTF-8 text; give the path of a Hugging Face config.json") from None
    if not isinstance(data, dict):
        raise SimtrainError(f"{FIELD} = {path!r}: expected a JSON object of config keys; give a Hugging Face config.json")
    return hf_to_model(data, path)


def _fail(path: str, key: str, value: Any, problem: str) -> SimtrainError:
    return SimtrainError(
        f"{FIELD} = {path!r}: {key} = {value!r} {problem}; simtrain reads decoder-only configs "
        f"(architectures {', '.join(ARCHITECTURES)}) or give the shape inline in [model]"
    )


def _flag(cfg: dict[str, Any], key: str, default: bool, path: str) -> bool:
    """A JSON true/false (a string such as "false" would be truthy if cast)."""
    v = cfg.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _fail(path, key, v, "is not true or false")
    return v


def hf_to_model(cfg: dict[str, Any], path: str = "config.json") -> dict[str, Any]:
    archs = cfg.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise _fail(path, "architectures", cfg.get("architectures"), "is not a list of class names")
    mtype = cfg.get("model_type", "")
    if not isinstance(mtype, str):
        raise _fail(path, "model_type", mtype, "is not a string")
    for key in EXPERT_KEYS + MOE_INTS:
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise _fail(path, key, v, "is not a whole number")
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise _fail(path, "architectures", unknown[0], "is not a supported architecture")
    if mtype and mtype not in MODEL_TYPES:
        raise _fail(path, "model_type", mtype, "is not a supported model type")
    if not archs and not mtype:
        raise SimtrainError(f"{FIELD} = {path!r}: has neither architectures nor model_type; give a Hugging Face config.json of a Llama, Mistral, Qwen2 or GPT-NeoX model")
    family = mtype or ARCHITECTURES[archs[0]]
    if family == "llama4":  # the multimodal config: the language model is its text_config
        text = cfg.get("text_config")
        if not isinstance(text, dict):
            raise _fail(path, "text_config", text, "is missing or not a table; give the Llama 4 config.json as published")
        cfg, family = text, "llama4_text"
        for key in EXPERT_KEYS + MOE_INTS:
            v = cfg.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise _fail(path, f"text_config.{key}", v, "is not a whole number")
    out: dict[str, Any] = {}
    for key in COPIED:
        if key not in cfg:
            raise SimtrainError(f"{FIELD} = {path!r}: missing key {key}; add it to the file or give [model] {key} inline")
        out[key] = cfg[key]
    kv = cfg.get("num_key_value_heads")
    if kv is not None:
        # In config.json an absent (or null) key means no GQA; 0 is not a head count (in
        # simtrain's [model] 0 means "the default", so it would silently become no GQA)
        if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1:
            raise SimtrainError(f"{FIELD} = {path!r}: num_key_value_heads = {kv!r} is not a positive head count; "
                                "fix the file (omit the key for no grouped-query attention)")
        out["num_key_value_heads"] = kv
    if cfg.get("head_dim") is not None:
        out["head_dim"] = cfg["head_dim"]
    act = str(cfg.get("hidden_act", cfg.get("activation_function", "silu" if family != "gpt_neox" else "gelu")))
    if act in GATED_ACTS:
        out["mlp"] = "gated"
    elif act in PLAIN_ACTS:
        out["mlp"] = "plain"
    else:
        raise _fail(path, "hidden_act", act, f"is not an activation simtrain knows (gated: {', '.join(GATED_ACTS)}; plain: {', '.join(PLAIN_ACTS)})")
    window = cfg.get("sliding_window")
    if family == "qwen2" and not _flag(cfg, "use_sliding_window", False, path):
        window = None  # Qwen2 configs carry a window they do not use
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise _fail(path, "sliding_window", window, "is not a positive whole number of tokens")
        layers = cfg.get("num_hidden_layers")
        mwl = cfg.get("max_window_layers")
        if family == "qwen2" and isinstance(mwl, int) and isinstance(layers, int) and mwl >= layers:
            window = None  # layers below max_window_layers attend fully: here, all of them
        elif family == "qwen2" and isinstance(mwl, int) and isinstance(layers, int) and 0 < mwl < layers:
            raise SimtrainError(
                f"{FIELD} = {path!r}: use_sliding_window = true with max_window_layers = {mwl} of {layers} layers: "
                "full attention on some layers and a window on the rest is not modelled; give model.sliding_window "
                "for all layers, or set use_sliding_window to false")
    if window is not None:
        out["sliding_window"] = window
    out["tie_word_embeddings"] = _flag(cfg, "tie_word_embeddings", False, path)
    out["norm"] = "layernorm" if ("layer_norm_eps" in cfg and "rms_norm_eps" not in cfg) else "rmsnorm"
    out["position_embedding"] = "rope"
    if family == "gpt_neox":
        out["bias"] = _flag(cfg, "use_bias", True, path)
    else:
        out["bias"] = _flag(cfg, "attention_bias", False, path) or _flag(cfg, "mlp_bias", False, path)
    out.update(_moe_keys(cfg, path, family))
    if cfg.get("kv_lora_rank"):
        out.update(_mla(cfg))
    if cfg.get("num_nextn_predict_layers"):  # DeepSeek-V3's multi-token prediction modules
        out["num_nextn_predict_layers"] = cfg["num_nextn_predict_layers"]
    return out


def _moe_keys(cfg: dict[str, Any], path: str, family: str = "") -> dict[str, Any]:
    experts = next((cfg[k] for k in EXPERT_KEYS if cfg.get(k)), 0)
    if not experts or experts < 2:
        return {}
    layers = cfg.get("num_hidden_layers")
    out: dict[str, Any] = {}
    # which layers have experts: every k-th (Qwen2/3-MoE decoder_sparse_step, Llama 4
    # interleave_moe_layer_step: layer i when (i + 1) % k == 0), minus mlp_only_layers
    # (Qwen); DeepSeek's moe_layer_freq counts from first_k_dense_replace (i % k == 0)
    step_key = "interleave_moe_layer_step" if "interleave_moe_layer_step" in cfg else "decoder_sparse_step"
    step = cfg.get(step_key, 1)
    if step is None or step < 1:
        raise _fail(path, step_key, step, "is not a positive whole number")
    if step != 1:
        out["moe_layer_step"] = step
    dense = cfg.get("mlp_only_layers") or []
    if not isinstance(dense, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in dense):
        raise _fail(path, "mlp_only_layers", dense, "is not a list of layer indices")
    freq = cfg.get("moe_layer_freq", 1)
    if freq < 1:
        raise _fail(path, "moe_layer_freq", freq, "is not a positive whole number")
    if freq != 1 and isinstance(layers, int):
        first = cfg.get("first_k_dense_replace") or 0
        dense = sorted(set(dense) | {i for i in range(first, layers) if (i - first) % freq})
    explicit = cfg.get("moe_layers")  # Llama 4 may list its MoE layers outright
    if isinstance(explicit, list) and isinstance(layers, int):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in explicit):
            raise _fail(path, "moe_layers", explicit, "is not a list of layer indices")
        dense, out = sorted(set(range(layers)) - set(explicit)), {}
    if dense:
        out["mlp_only_layers"] = dense
    if not cfg.get("num_experts_per_tok"):
        raise SimtrainError(f"{FIELD} = {path!r}: missing key num_experts_per_tok for its {experts} experts; "
                            "add it to the file or give [model] num_experts_per_tok inline")
    out.update({"num_experts": experts, "num_experts_per_tok": cfg["num_experts_per_tok"]})
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size", "first_k_dense_replace", "n_group", "topk_group"):
        if cfg.get(key):
            out[key] = cfg[key]
    if family == "llama4_text":
        # Llama 4 (transformers' modeling_llama4.py): experts and the one shared expert are
        # intermediate_size wide; the dense layers' MLP is intermediate_size_mlp wide
        out["moe_intermediate_size"] = cfg["intermediate_size"]
        out["num_shared_experts"] = 1
        if cfg.get("intermediate_size_mlp"):
            out["intermediate_size"] = cfg["intermediate_size_mlp"]
    if cfg.get("n_shared_experts"):
        out["num_shared_experts"] = cfg["n_shared_experts"]
    elif cfg.get("shared_expert_intermediate_size"):
        out["num_shared_experts"] = 1
    if out.get("topk_group") and not out.get("n_group"):
        out.pop("topk_group")
    return out


def _mla(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multi-head latent attention's widths (modeling_deepseek.py defaults where absent);
    every head gets its own up-projected key and value."""
    return {"q_lora_rank": cfg.get("q_lora_rank") or 0, "kv_lora_rank": cfg["kv_lora_rank"],
            "qk_nope_head_dim": cfg.get("qk_nope_head_dim", 128), "qk_rope_head_dim": cfg.get("qk_rope_head_dim", 64),
            "v_head_dim": cfg.get("v_head_dim", 128), "num_key_value_heads": cfg["num_attention_heads"]}


def default_name(path: str) -> str:
    """A readable model name: the config's folder (e.g. Meta-Llama-3-8B) or the file stem."""
    p = Path(path)
    return p.parent.name if p.stem == "config" and p.parent.name else p.stem
