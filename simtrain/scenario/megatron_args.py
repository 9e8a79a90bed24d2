"""Megatron-LM launch flags -> scenario overrides (`--megatron-args "..."`).

`megatron_overrides(text, model_raw)` returns `section.key=value` strings, applied before
`--set` (so `--set` wins), and the flags it ignored. Mapping:

    --tensor-model-parallel-size N      parallel.tp        (parallel.dp = 0: DP follows from
    --pipeline-model-parallel-size N    parallel.pp         the GPU count, as in Megatron)
    --context-parallel-size N           parallel.cp
    --num-layers-per-virtual-pipeline-stage K   parallel.vp = layers / (pp * K),
    --num-virtual-stages-per-pipeline-rank V    parallel.vp = V   schedule "interleaved"
    --micro-batch-size, --global-batch-size, --seq-length   parallel.micro_batch,
                                        training.global_batch, training.seq_len
    --recompute-activations             parallel.recompute = "selective"
    --recompute-granularity selective|full   parallel.recompute
    --bf16 / --fp16                     training.precision
    --use-flash-attn                    parallel.flash_attention = true
    --tp-comm-overlap                   engine.overlap_tp_comm = true
    --grad-reduce-in-bf16               training.grad_precision = "bf16" (else fp32 main_grad)
    model shape (any of them given: Megatron's defaults fill the rest of the architecture):
    --num-layers, --hidden-size, --ffn-hidden-size, --num-attention-heads, --kv-channels,
    --group-query-attention + --num-query-groups G, --padded-vocab-size/--vocab-size,
    --max-position-embeddings, --swiglu (else GELU), --normalization RMSNorm|LayerNorm,
    --disable-bias-linear, --untie-embeddings-and-output-weights,
    --position-embedding-type rope|learned_absolute

Megatron switches are false when absent, and so are their fields here:
`parallel.sequence_parallel` (--sequence-parallel), `parallel.zero` 1 or 0
(--use-distributed-optimizer), `parallel.overlap_grad_reduce` (--overlap-grad-reduce),
`parallel.recompute` "none" unless a recompute flag is given. `--use-flash-attn` only
turns FlashAttention on: Megatron-Core runs fused attention without the flag.
"""

from __future__ import annotations

import shlex
from typing import Any

from simtrain.scenario.errors import SimtrainError

INT_FLAGS = {
    "--tensor-model-parallel-size": "parallel.tp",
    "--pipeline-model-parallel-size": "parallel.pp",
    "--context-parallel-size": "parallel.cp",
    "--num-virtual-stages-per-pipeline-rank": "parallel.vp",
    "--micro-batch-size": "parallel.micro_batch",
    "--global-batch-size": "training.global_batch",
    "--seq-length": "training.seq_len",
    "--num-layers": "model.num_hidden_layers",
    "--hidden-size": "model.hidden_size",
    "--ffn-hidden-size": "model.intermediate_size",
    "--num-attention-heads": "model.num_attention_heads",
    "--kv-channels": "model.head_dim",
    "--num-query-groups": "model.num_key_value_heads",
    "--padded-vocab-size": "model.vocab_size",
    "--vocab-size": "model.vocab_size",
    "--max-position-embeddings": "model.max_position_embeddings",
    "--num-layers-per-virtual-pipeline-stage": "",  # converted to parallel.vp below
}
CHOICE_FLAGS = {
    "--recompute-granularity": ("parallel.recompute", {"selective": "selective", "full": "full"}),
    "--normalization": ("model.norm", {"RMSNorm": "rmsnorm", "LayerNorm": "layernorm"}),
    "--position-embedding-type": ("model.position_embedding", {"rope": "rope", "learned_absolute": "learned"}),
}
SWITCHES = {
    "--sequence-parallel", "--use-distributed-optimizer", "--overlap-grad-reduce",
    "--recompute-activations", "--swiglu", "--group-query-attention", "--disable-bias-linear",
    "--untie-embeddings-and-output-weights", "--use-flash-attn", "--bf16", "--fp16",
    "--tp-comm-overlap", "--grad-reduce-in-bf16",
}
MODEL_FLAGS = {
    "--num-layers", "--hidden-size", "--ffn-hidden-size", "--num-attention-heads", "--kv-channels",
    "--num-query-groups", "--padded-vocab-size", "--vocab-size", "--swiglu", "--normalization",
    "--disable-bias-linear", "--untie-embeddings-and-output-weights", "--group-query-attention",
    "--position-embedding-type", "--max-position-embeddings",
}
OPT = "--megatron-args"


def _tokens(text: str | list[str]) -> list[str]:
    if isinstance(text, list):
        return list(text)
    try:
        return shlex.split(text)
    except ValueError as e:
        raise SimtrainError(f"{OPT} {text!r}: cannot split it into flags ({e}); check the quotes") from None


def parse(text: str | list[str]) -> tuple[dict[str, Any], list[str]]:
    """Flags -> {flag: value or True}, and the flags simtrain does not know (in order)."""
    toks = _tokens(text)
    known: dict[str, Any] = {}
    ignored: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if not tok.startswith("--"):
            raise SimtrainError(f"{OPT}: stray value {tok!r} (no flag before it); write flags as --name value")
        flag, eq, inline = tok.partition("=")
        takes_value = flag in INT_FLAGS or flag in CHOICE_FLAGS
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(toks) and not toks[i + 1].startswith("--"):
                i += 1
                value = toks[i]
            else:
                raise SimtrainError(f"{OPT}: {flag} needs a value; write e.g. {flag} {_example(flag)}")
            known[flag] = _value(flag, value)
        elif flag in SWITCHES:
            if eq:
                raise SimtrainError(f"{OPT}: {flag} is a switch and takes no value; write {flag} alone")
            known[flag] = True
        else:
            ignored.append(flag)
            if not eq and i + 1 < len(toks) and not toks[i + 1].startswith("--"):
                i += 1  # its value
        i += 1
    return known, ignored


def _example(flag: str) -> str:
    if flag in CHOICE_FLAGS:
        return next(iter(CHOICE_FLAGS[flag][1]))
    return "8"


def _value(flag: str, value: str) -> Any:
    if flag in CHOICE_FLAGS:
        choices = CHOICE_FLAGS[flag][1]
        if value not in choices:
            raise SimtrainError(f"{OPT}: {flag} {value!r}: not a choice simtrain models; use one of {', '.join(choices)}")
        return choices[value]
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1 or str(value).strip().lstrip("+") != str(n):
        raise SimtrainError(f"{OPT}: {flag} {value!r}: expected a positive whole number; write e.g. {flag} {_example(flag)}")
    return n


def megatron_overrides(text: str | list[str], model_layers: int = 0) -> tuple[list[str], list[str]]:
    """(`section.key=value` overrides, ignored flags). `model_layers` is the scenario's layer
    count, needed for --num-layers-per-virtual-pipeline-stage when --num-layers is absent."""
    known, ignored = parse(text)
    out: dict[str, Any] = {}
    for flag, value in known.items():
        key = INT_FLAGS.get(flag) or (CHOICE_FLAGS[flag][0] if flag in CHOICE_FLAGS else "")
        if key:
            out[key] = value
    if any(f in known for f in ("--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size")):
        out["parallel.dp"] = 0
    per_stage = known.get("--num-layers-per-virtual-pipeline-stage")
    if per_stage:
        layers = known.get("--num-layers", model_layers)
        pp = known.get("--pipeline-model-parallel-size", 1)
        if not layers:
            raise SimtrainError(f"{OPT}: --num-layers-per-virtual-pipeline-stage {per_stage} needs the layer count; add --num-layers or a scenario model")
        if layers % (pp * per_stage):
            raise SimtrainError(
                f"{OPT}: --num-layers-per-virtual-pipeline-stage {per_stage}: {layers} layers do not split into "
                f"pipeline size {pp} x {per_stage} layers per virtual stage; use a value dividing {layers // pp if layers % pp == 0 else layers}")
        out["parallel.vp"] = layers // (pp * per_stage)
    if out.get("parallel.vp", 1) > 1:
        out["schedule.name"] = "interleaved"
    out["parallel.sequence_parallel"] = bool(known.get("--sequence-parallel"))
    out["parallel.zero"] = 1 if known.get("--use-distributed-optimizer") else 0
    out["parallel.overlap_grad_reduce"] = bool(known.get("--overlap-grad-reduce"))
    if "parallel.recompute" not in out:
        out["parallel.recompute"] = "selective" if known.get("--recompute-activations") else "none"
    if known.get("--use-flash-attn"):
        out["parallel.flash_attention"] = True
    if known.get("--bf16"):
        out["training.precision"] = "bf16"
    if known.get("--fp16"):
        out["training.precision"] = "fp16"
    out["training.grad_precision"] = "bf16" if known.get("--grad-reduce-in-bf16") else "fp32"
    if known.get("--tp-comm-overlap"):
        out["engine.overlap_tp_comm"] = True
    if any(f in known for f in MODEL_FLAGS):
        out["model.mlp"] = "gated" if known.get("--swiglu") else "plain"
        out["model.bias"] = not known.get("--disable-bias-linear")
        out["model.tie_word_embeddings"] = not known.get("--untie-embeddings-and-output-weights")
        out.setdefault("model.norm", "layernorm")
        out.setdefault("model.position_embedding", "learned")
        if not known.get("--group-query-attention") and "--num-query-groups" not in known and "--num-attention-heads" in known:
            out["model.num_key_value_heads"] = known["--num-attention-heads"]
    return [f"{k}={_toml(v)}" for k, v in out.items()], ignored


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def warning_line(ignored: list[str]) -> str:
    return (f"simtrain: warning: {OPT}: ignored {len(ignored)} flag{'s' if len(ignored) != 1 else ''} "
            f"simtrain does not model: {' '.join(ignored)}")


def scenario_megatron_overrides(source: str | None, text: str) -> tuple[list[str], list[str]]:
    """Overrides for `text` given the scenario `source` (its model's layer count)."""
    from simtrain.scenario.config import DEFAULT_SCENARIO
    from simtrain.scenario.files import read_toml, resolve_path
    from simtrain.scenario.models import model_config

    layers = 0
    known, _ = parse(text)
    if "--num-layers-per-virtual-pipeline-stage" in known and "--num-layers" not in known:
        path = resolve_path(source or DEFAULT_SCENARIO, "scenarios", "scenario", "scenario")
        raw = read_toml(path, "scenario").get("model", {})
        layers = model_config(raw).num_hidden_layers if isinstance(raw, dict) else 0
    return megatron_overrides(text, layers)
