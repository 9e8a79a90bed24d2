"""Model shapes: the [model] section (`ModelConfig`), the catalog of published models, and
`model_config`, which builds and checks the section from a catalog name, a Hugging Face
config.json or inline keys. Parameter counts and FLOPs: simtrain.workload.flops.

Shapes use Hugging Face config.json key names. Sources: Llama 3 (Grattafiori et al. 2024,
Table 3, and the released configs), Llama 2 (Touvron et al. 2023), LLaMA (Touvron et al.
2023a; the shapes the Aleph Alpha layout study trained), GPT-3 (Brown et al. 2020,
Table 2.1), Nemotron-4 15B (Parmar et al. 2024), PaLM 540B (Chowdhery et al. 2022), the Megatron-LM SC21 GPT family (Narayanan et al. 2021, Table 1; vocab 51,200).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import parse_dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Model shape, with Hugging Face config.json key names."""

    name: str = ""
    num_hidden_layers: int = 0
    hidden_size: int = 0
    intermediate_size: int = 0
    num_attention_heads: int = 0
    num_key_value_heads: int = 0  # 0: same as num_attention_heads (no GQA)
    vocab_size: int = 0
    head_dim: int = 0  # 0: hidden_size // num_attention_heads
    mlp: str = "gated"  # "gated" (SwiGLU: gate, up, down) or "plain" (GELU: up, down)
    bias: bool = False  # linear-layer biases (GPT-2/3, Megatron GPT)
    # Dropout on the residual branches and attention probabilities: -1 = as GPT-style models
    # train (0.1, Megatron's default) when the model has biases, else none (Llama-style);
    # 0 = none (MPT, for instance, has biases and trains without dropout).
    dropout: float = -1.0
    position_embedding: str = "rope"  # "rope" or "learned" (adds max_position_embeddings x hidden params)
    max_position_embeddings: int = 0
    tie_word_embeddings: bool = False
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm"
    hf_config: str = ""  # path of a Hugging Face config.json to read the shape from (simtrain/scenario/hf.py)
    # sliding-window attention (Mistral): each token attends to at most this many tokens
    # (itself included); 0: the whole causal context (simtrain.workload.flops.attended_length)
    sliding_window: int = 0
    # Mixture of experts (0 experts: a dense model). Each MoE layer's MLP is `num_experts`
    # routed experts of width `moe_intermediate_size`, each token going to the top
    # `num_experts_per_tok`, plus always-active shared experts; the first
    # `first_k_dense_replace` layers keep a dense MLP of `intermediate_size` (DeepSeek).
    num_experts: int = 0
    num_experts_per_tok: int = 0  # top-k
    moe_intermediate_size: int = 0  # 0: intermediate_size
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0  # total width of the shared experts; 0: num_shared_experts x moe width
    first_k_dense_replace: int = 0
    # MoE on every `moe_layer_step`-th layer only: layer i (0-based) has experts when
    # (i + 1) % moe_layer_step == 0, as Qwen2-MoE's decoder_sparse_step and Llama 4's
    # interleave_moe_layer_step place them (Llama 4 Maverick: 2, dense and MoE alternate);
    # `mlp_only_layers` lists further dense layers (Qwen2-MoE). The dense layers' MLP has
    # width intermediate_size.
    moe_layer_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    capacity_factor: float = 0.0  # 0: dropless; else each expert takes at most cf x its balanced share
    n_group: int = 0  # DeepSeek's group-limited routing: experts in n_group groups ...
    topk_group: int = 0  # ... and each token routed to at most topk_group of them (0: unlimited)
    # Multi-token prediction (DeepSeek-V3 §2.2): this many extra modules on the last pipeline
    # stage, each a projection (2h -> h), one transformer layer and the shared output head
    # again. Trained compute and memory, not model FLOPs (DeepSeek's 37B active exclude it).
    num_nextn_predict_layers: int = 0
    # Multi-head latent attention (DeepSeek-V2/V3; DeepSeek-AI 2024, arXiv:2405.04434 §2.1):
    # kv_lora_rank > 0 turns it on. Queries go through a low-rank bottleneck of q_lora_rank
    # (0: a plain query projection), keys and values through one of kv_lora_rank plus a
    # shared rotary key of qk_rope_head_dim; each head scores with qk_nope_head_dim +
    # qk_rope_head_dim dimensions and returns v_head_dim values (attention_linears).
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0


_LLAMA = dict(mlp="gated", bias=False, position_embedding="rope", norm="rmsnorm")
_GPT = dict(mlp="plain", bias=True, position_embedding="learned", norm="layernorm", tie_word_embeddings=True)


def _gpt_sc21(layers: int, hidden: int, heads: int) -> dict[str, Any]:
    return dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=4 * hidden,
                num_attention_heads=heads, num_key_value_heads=heads, vocab_size=51200,
                max_position_embeddings=2048, **_GPT)


CATALOG: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, **_LLAMA),
    "llama3-70b": dict(num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8, vocab_size=128256, **_LLAMA),
    # Table 3 of the Llama 3 paper prints vocab 128,000; the released config uses 128,256.
    "llama3-405b": dict(num_hidden_layers=126, hidden_size=16384, intermediate_size=53248, num_attention_heads=128, num_key_value_heads=8, vocab_size=128256, **_LLAMA),
    "llama2-7b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, **_LLAMA),
    "llama2-13b": dict(num_hidden_layers=40, hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40, vocab_size=32000, **_LLAMA),
    "llama2-70b": dict(num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8, vocab_size=32000, **_LLAMA),
    "llama-13b": dict(num_hidden_layers=40, hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40, vocab_size=32000, **_LLAMA),
    "llama-30b": dict(num_hidden_layers=60, hidden_size=6656, intermediate_size=17920, num_attention_heads=52, num_key_value_heads=52, vocab_size=32000, **_LLAMA),
    "llama-65b": dict(num_hidden_layers=80, hidden_size=8192, intermediate_size=22016, num_attention_heads=64, num_key_value_heads=64, vocab_size=32000, **_LLAMA),
    "gpt3-175b": dict(num_hidden_layers=96, hidden_size=12288, intermediate_size=49152, num_attention_heads=96, num_key_value_heads=96, vocab_size=50257, max_position_embeddings=2048, **_GPT),
    # Nemotron-4 15B (Parmar et al. 2024, arXiv:2402.16819, Table 1 and §2): 32 layers, hidden
    # 6144, 48 heads, 8 KV heads, squared-ReLU MLP of 4h (two matrices, as "plain"), RoPE,
    # no biases, untied embeddings, 256,000-token vocabulary, LayerNorm.
    "nemotron4-15b": dict(num_hidden_layers=32, hidden_size=6144, intermediate_size=24576, num_attention_heads=48,
                          num_key_value_heads=8, vocab_size=256000, mlp="plain", bias=False, position_embedding="rope",
                          norm="layernorm"),
    # PaLM 540B (Chowdhery et al. 2022, Table 1 and §2): 118 layers, d_model 18432, 48 heads
    # of 256 with multi-query attention (one K/V head), SwiGLU MLP of 4 d_model, RoPE, no
    # biases, input and output embeddings shared, 256k vocabulary. PaLM's parallel
    # attention + MLP block has the same FLOPs and is run here as the serial block.
    "palm-540b": dict(num_hidden_layers=118, hidden_size=18432, intermediate_size=73728, num_attention_heads=48,
                      num_key_value_heads=1, head_dim=256, vocab_size=256000, mlp="gated", bias=False,
                      position_embedding="rope", norm="layernorm", tie_word_embeddings=True),
    # Mixtral 8x7B and 8x22B (Jiang et al. 2024, arXiv:2401.04088; mistralai's released
    # config.json): Mistral blocks whose MLP is 8 SwiGLU experts, top-2 routing, no shared
    # experts. 8x7B: 32 layers, hidden 4096, experts 14336 wide, 32 heads / 8 KV heads,
    # vocab 32,000: 46.7B parameters, 12.9B active. 8x22B: 56 layers, hidden 6144, experts
    # 16384, 48 / 8 heads, vocab 32,768: 141B, 39B active.
    "mixtral-8x7b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=32000, num_experts=8, num_experts_per_tok=2, **_LLAMA),
    "mixtral-8x22b": dict(num_hidden_layers=56, hidden_size=6144, intermediate_size=16384, num_attention_heads=48,
                          num_key_value_heads=8, vocab_size=32768, num_experts=8, num_experts_per_tok=2, **_LLAMA),
    # DeepSeek-V3 (DeepSeek-AI 2024, arXiv:2412.19437, §2 and §4.2; the released config.json):
    # 61 layers, hidden 7168, the first 3 with a dense MLP of 18432, the other 58 with 256
    # routed experts of 2048 (top-8) and 1 shared expert of 2048; routing limited to 4 of 8
    # expert groups (node-limited routing: at most 4 nodes per token); vocab 129,280.
    # Multi-head latent attention: queries through a rank-1536 bottleneck, keys and values
    # through a rank-512 one plus a 64-dim shared rotary key; 128 heads score with 128 + 64
    # = 192 dims and return 128 (q_a, q_b, kv_a, kv_b and o: 187M weights per layer). One
    # multi-token-prediction module (§2.2; its 14B weights are outside the 671B total, 37B
    # active per token, as the paper counts).
    "deepseek-v3": dict(num_hidden_layers=61, hidden_size=7168, intermediate_size=18432, num_attention_heads=128,
                        num_key_value_heads=128, head_dim=192, vocab_size=129280, num_experts=256,
                        num_experts_per_tok=8, moe_intermediate_size=2048, num_shared_experts=1,
                        first_k_dense_replace=3, n_group=8, topk_group=4, q_lora_rank=1536, kv_lora_rank=512,
                        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, num_nextn_predict_layers=1,
                        **_LLAMA),
    # Qwen3 MoE (Qwen team 2025, Qwen3 technical report; the released config.json files):
    # 128 SwiGLU experts, top-8, no shared experts, GQA with 4 K/V heads of 128, vocab
    # 151,936. 30B-A3B: 48 layers, hidden 2048, 32 heads, experts 768 wide (30.5B, 3.3B
    # active); 235B-A22B: 94 layers, hidden 4096, 64 heads, experts 1536 (235B, 22B active).
    "qwen3-30b-a3b": dict(num_hidden_layers=48, hidden_size=2048, intermediate_size=6144, num_attention_heads=32,
                          num_key_value_heads=4, head_dim=128, vocab_size=151936, num_experts=128,
                          num_experts_per_tok=8, moe_intermediate_size=768, **_LLAMA),
    "qwen3-235b-a22b": dict(num_hidden_layers=94, hidden_size=4096, intermediate_size=12288, num_attention_heads=64,
                            num_key_value_heads=4, head_dim=128, vocab_size=151936, num_experts=128,
                            num_experts_per_tok=8, moe_intermediate_size=1536, **_LLAMA),
    "gpt-1.7b": _gpt_sc21(24, 2304, 24),
    "gpt-3.6b": _gpt_sc21(30, 3072, 32),
    "gpt-7.5b": _gpt_sc21(36, 4096, 32),
    "gpt-18b": _gpt_sc21(40, 6144, 48),
    "gpt-39b": _gpt_sc21(48, 8192, 64),
    "gpt-76b": _gpt_sc21(60, 10240, 80),
    "gpt-145b": _gpt_sc21(80, 12288, 96),
    "gpt-310b": _gpt_sc21(96, 16384, 128),
    "gpt-530b": _gpt_sc21(105, 20480, 128),
    "gpt-1t": _gpt_sc21(128, 25600, 160),
}

MAX_LAYERS = 10_000  # far past any real model; refused so that a typo cannot hang the simulator
# Widths far past any published model (the largest hidden size is ~25,600, the largest
# vocabulary ~256,000), refused so that a typo is not simulated as a real model.
MAX_DIMS = {"num_nextn_predict_layers": 64, "hidden_size": 1 << 20, "intermediate_size": 1 << 22, "num_attention_heads": 1 << 16,
            "num_key_value_heads": 1 << 16, "head_dim": 1 << 16, "vocab_size": 1 << 24, "max_position_embeddings": 1 << 24}
_REQUIRED = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")


def model_config(raw: dict[str, Any]) -> ModelConfig:
    """Build the [model] section: a catalog `name`, inline HF keys, or a name plus overrides."""
    name = raw.get("name", "")
    base: dict[str, Any] = {}
    hf = raw.get("hf_config", "")
    if hf:
        from simtrain.scenario.hf import default_name, read_hf_config

        if not isinstance(hf, str):
            raise bad("model.hf_config", hf, "expected a string", 'write hf_config = "path/to/config.json"')
        # hf_config replaces a catalog model.name (so `--set model.hf_config=...` works on
        # any scenario); the model is then named after the file's folder.
        base = dict(read_hf_config(hf), name=default_name(hf))
    elif name and not (isinstance(name, str) and name not in CATALOG and all(k in raw for k in _REQUIRED)):
        # a name outside the catalog is the model's own name when its shape is given inline
        if not isinstance(name, str) or name not in CATALOG:
            raise bad("model.name", name, "not in the model catalog",
                      f"{_close(str(name))}, or give the shape inline (num_hidden_layers, hidden_size, ...) or hf_config")
        base = dict(CATALOG[name], name=name)
    cfg = parse_dataclass(ModelConfig, {**base, **{k: v for k, v in raw.items() if not (hf and k == "name")}}, "model")
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            raise bad(f"model.{f.name}", v, "must not be negative", f"set model.{f.name} to a positive whole number")
    if not (cfg.dropout == -1 or 0 <= cfg.dropout < 1):
        raise bad("model.dropout", cfg.dropout, "must be a probability in [0, 1) or -1",
                  "use e.g. 0.1, 0 for none, or -1 (0.1 for models with biases, else none)")
    if cfg.num_hidden_layers > MAX_LAYERS:
        raise bad("model.num_hidden_layers", cfg.num_hidden_layers, f"is above simtrain's limit of {MAX_LAYERS:,}",
                  "give the model's real layer count")
    for key, cap in MAX_DIMS.items():
        if getattr(cfg, key) > cap:
            raise bad(f"model.{key}", getattr(cfg, key), f"is above simtrain's limit of {cap:,}", f"give the model's real {key}")
    for key in _REQUIRED:
        if getattr(cfg, key) <= 0:
            raise bad(f"model.{key}", getattr(cfg, key), "missing or not positive",
                      "set it in [model] (Hugging Face config.json name) or pick a catalog model with model.name")
    if not cfg.num_key_value_heads:
        cfg = dataclasses.replace(cfg, num_key_value_heads=cfg.num_attention_heads)
    if not cfg.head_dim:
        if cfg.hidden_size % cfg.num_attention_heads:
            raise bad("model.num_attention_heads", cfg.num_attention_heads,
                      f"does not divide hidden_size {cfg.hidden_size}", "set model.head_dim explicitly")
        cfg = dataclasses.replace(cfg, head_dim=cfg.hidden_size // cfg.num_attention_heads)
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise bad("model.num_key_value_heads", cfg.num_key_value_heads,
                  f"must divide num_attention_heads ({cfg.num_attention_heads})", "use a divisor such as 8")
    cfg = _check_moe(cfg)
    cfg = _check_mla(cfg)
    if not cfg.name:
        cfg = dataclasses.replace(cfg, name="custom")
    return cfg


def _close(name: str) -> str:
    close = difflib.get_close_matches(name, list(CATALOG), n=3, cutoff=0.6)
    listing = f"`simtrain list models` shows all {len(CATALOG)}"
    return ("did you mean " + " or ".join(repr(c) for c in close) + f"? ({listing})") if close else listing


def _check_moe(cfg: ModelConfig) -> ModelConfig:
    """Mixture-of-experts keys: consistent, defaults filled in (one line when not)."""
    moe_keys = ("num_experts_per_tok", "moe_intermediate_size", "num_shared_experts", "shared_expert_intermediate_size",
                "first_k_dense_replace", "n_group", "topk_group", "mlp_only_layers")
    if not cfg.num_experts:
        extra = ([k for k in moe_keys if getattr(cfg, k)] + (["capacity_factor"] if cfg.capacity_factor else [])
                 + (["moe_layer_step"] if cfg.moe_layer_step != 1 else []))
        if extra:
            raise bad(f"model.{extra[0]}", getattr(cfg, extra[0]), "is a mixture-of-experts key but model.num_experts is 0",
                      "set model.num_experts (routed experts per layer) or remove the key")
        return cfg
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    if not 1 <= k <= E:
        raise bad("model.num_experts_per_tok", k, f"must be between 1 and num_experts ({E})",
                  f"route each token to at most {E} experts, e.g. {min(E, 2)}")
    if not 0 <= cfg.first_k_dense_replace < cfg.num_hidden_layers:
        raise bad("model.first_k_dense_replace", cfg.first_k_dense_replace,
                  f"must leave at least one MoE layer of the {cfg.num_hidden_layers}", "use fewer dense layers first")
    if not 1 <= cfg.moe_layer_step <= cfg.num_hidden_layers:
        raise bad("model.moe_layer_step", cfg.moe_layer_step, f"must be between 1 and num_hidden_layers ({cfg.num_hidden_layers})",
                  "use 1 (every layer has experts) or e.g. 2 (every second layer)")
    bad_index = [i for i in cfg.mlp_only_layers if not 0 <= i < cfg.num_hidden_layers]
    if bad_index:
        raise bad("model.mlp_only_layers", list(cfg.mlp_only_layers), f"layer {bad_index[0]} is not a layer index "
                  f"(0 .. {cfg.num_hidden_layers - 1})", "list 0-based indices of the dense layers")
    if not any(moe_layer_flags(cfg)):
        raise bad("model.moe_layer_step", cfg.moe_layer_step, "with first_k_dense_replace and mlp_only_layers leaves no "
                  "MoE layer", "keep at least one layer with experts")
    if cfg.capacity_factor < 0 or (0 < cfg.capacity_factor < 1):
        raise bad("model.capacity_factor", cfg.capacity_factor, "must be 0 (dropless) or at least 1",
                  "use e.g. 1.25, or 0 for dropless routing")
    if cfg.n_group or cfg.topk_group:
        if cfg.n_group < 1 or E % cfg.n_group:
            raise bad("model.n_group", cfg.n_group, f"must divide num_experts ({E})", "use a divisor such as 8")
        if not 1 <= cfg.topk_group <= cfg.n_group:
            raise bad("model.topk_group", cfg.topk_group, f"must be between 1 and n_group ({cfg.n_group})",
                      "give the most groups a token may reach, e.g. 4")
    moe_w = cfg.moe_intermediate_size or cfg.intermediate_size
    shared = cfg.shared_expert_intermediate_size or cfg.num_shared_experts * moe_w
    return dataclasses.replace(cfg, moe_intermediate_size=moe_w, shared_expert_intermediate_size=shared)


def _check_mla(cfg: ModelConfig) -> ModelConfig:
    """Multi-head latent attention keys: all widths given when kv_lora_rank is (one line when
    not); head_dim becomes the query/key width the attention kernel runs at."""
    keys = ("q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    if not cfg.kv_lora_rank:
        extra = [k for k in keys if getattr(cfg, k)]
        if extra:
            raise bad(f"model.{extra[0]}", getattr(cfg, extra[0]), "is a multi-head latent attention key but "
                      "model.kv_lora_rank is 0", "set model.kv_lora_rank (DeepSeek-V3: 512) or remove the key")
        return cfg
    for k in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        if getattr(cfg, k) <= 0:
            raise bad(f"model.{k}", getattr(cfg, k), "missing: multi-head latent attention needs it",
                      f"set model.{k} (DeepSeek-V3: {dict(qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)[k]})")
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        raise bad("model.num_key_value_heads", cfg.num_key_value_heads, "multi-head latent attention up-projects "
                  "keys and values for every head", f"set it to num_attention_heads ({cfg.num_attention_heads}) or omit it")
    return dataclasses.replace(cfg, head_dim=cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)


def is_mla(model: ModelConfig) -> bool:
    return model.kv_lora_rank > 0


def qk_head_dim(model: ModelConfig) -> int:
    """Dimensions each head scores queries against keys with (MLA: nope + rope)."""
    return model.qk_nope_head_dim + model.qk_rope_head_dim if is_mla(model) else model.head_dim


def v_head_dim(model: ModelConfig) -> int:
    """Dimensions of each head's values and output (MLA: v_head_dim)."""
    return model.v_head_dim if is_mla(model) else model.head_dim


def attention_linears(model: ModelConfig) -> tuple[tuple[str, int, int, bool], ...]:
    """The attention block's weight matrices in the order a layer runs them, whole-model
    sizes: (name, input width, output width, split over TP). Standard and grouped-query
    attention: one fused QKV projection (column-parallel) and the output projection
    (row-parallel). Multi-head latent attention (DeepSeek-V2 §2.1; the released
    modeling_deepseek.py): q_a (down, h -> q_lora), q_b (up, q_lora -> heads x qk),
    kv_a (down, h -> kv_lora + rope), kv_b (up, kv_lora -> heads x (nope + v)) and o
    (heads x v -> h). Megatron-Core keeps the two down projections whole on every TP rank
    (they are narrow) and splits the rest by heads."""
    h, H = model.hidden_size, model.num_attention_heads
    if not is_mla(model):
        hd, kv = model.head_dim, model.num_key_value_heads
        return (("qkv", h, (H + 2 * kv) * hd, True), ("out proj", H * hd, h, True))
    qk, v, rope, kvr = qk_head_dim(model), model.v_head_dim, model.qk_rope_head_dim, model.kv_lora_rank
    q = ((("q down", h, model.q_lora_rank, False), ("q up", model.q_lora_rank, H * qk, True))
         if model.q_lora_rank else (("q", h, H * qk, True),))
    return q + (("kv down", h, kvr + rope, False), ("kv up", kvr, H * (model.qk_nope_head_dim + v), True),
                ("out proj", H * v, h, True))


def is_moe(model: ModelConfig) -> bool:
    return model.num_experts > 0


def moe_layer_flags(model: ModelConfig) -> tuple[bool, ...]:
    """Per layer (0-based), whether its MLP is a mixture of experts: past the first
    `first_k_dense_replace` layers, on every `moe_layer_step`-th layer ((i + 1) % step == 0,
    Qwen2-MoE's and Llama 4's rule), and not in `mlp_only_layers`."""
    if not is_moe(model):
        return (False,) * model.num_hidden_layers
    dense = set(model.mlp_only_layers)
    return tuple(i >= model.first_k_dense_replace and (i + 1) % model.moe_layer_step == 0 and i not in dense
                 for i in range(model.num_hidden_layers))


def moe_layers(model: ModelConfig) -> int:
    """Layers with a mixture-of-experts MLP (the rest are dense)."""
    return sum(moe_layer_flags(model))


def require_model(name: str) -> ModelConfig:
    if name not in CATALOG:
        raise SimtrainError(f"model.name = {name!r}: not in the catalog; {_close(name)}")
    return model_config({"name": name})


def has_dropout(model: ModelConfig) -> bool:
    """Whether the layers apply dropout (masks kept for the backward, dropout kernels run)."""
    return model.dropout > 0 or (model.dropout < 0 and model.bias)
