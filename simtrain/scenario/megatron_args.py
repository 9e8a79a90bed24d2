"""Megatron-LM flags -> a scenario (`--megatron-args "..."`, `--megatron-script FILE`).

The flags describe the whole job as Megatron would run it, from Megatron's own defaults
(megatron/training/arguments.py), never from simtrain's default scenario: without a
SCENARIO the base is neutral (simtrain's defaults: dgx-h100, as many GPUs as one
replica needs unless --set cluster.gpus); with one, the scenario gives the cluster, the
engine options and, when no model flag is given, the model. `--set` applies after.

    --tensor-/--pipeline-model-parallel-size, --context-parallel-size (default 1)
                                        parallel.tp, pp, cp; DP follows from the GPU count
    --num-layers-per-virtual-pipeline-stage K, or --num-virtual-stages-per-pipeline-rank V
                                        parallel.vp = layers / (pp K), or V; schedule
                                        "interleaved" when vp > 1, else "1f1b"
    --decoder-first/last-pipeline-num-layers   parallel.first/last_stage_layers
    --micro-batch-size (required), --global-batch-size (default micro x DP), --seq-length
                                        (required): parallel.micro_batch, training.*
    --sequence-parallel (off at TP 1, as Megatron does), --use-distributed-optimizer
                                        (parallel.zero 1, else 0), --overlap-grad-reduce
    --recompute-activations / --recompute-granularity selective|full   parallel.recompute
    --use-flash-attn or --attention-backend flash (parallel.attention_kernel "fa2") | fused
    ("cudnn") | auto (the stack's default) | unfused|local (flash_attention false)
    --attention-dropout, --hidden-dropout (default 0.1)   model.dropout
    --cp-comm-type p2p (ring, Megatron's default) | all_gather     parallel.cp_algo
    --bf16 | --fp16 (one is required: Megatron trains in fp32 without, which simtrain does
                     not model)        training.precision; --grad-reduce-in-bf16
    --fp8-format hybrid|e4m3            training.precision "fp8" (Transformer Engine's FP8
                                        linears; the rest stays as --bf16 says)
    --fp8-param-gather                  training.fp8_params (with --fp8-format)
    --fp8-recipe delayed|tensorwise|blockwise|mxfp8   training.fp8_recipe "delayed" | "current" |
                                        "blockwise" | "mxfp8" (with --fp8-format; custom refused)
    --tp-comm-overlap                   engine.overlap_tp_comm
    --use-tp-pp-dp-mapping              parallel.order "tp-cp-pp-dp"; else Megatron-Core's
                                        "tp-cp-dp-pp" (its tp-cp-ep-dp-pp)
    model (any model flag replaces the scenario's model; Megatron's defaults fill the rest):
    --num-layers, --hidden-size, --num-attention-heads (required), --ffn-hidden-size
    (default 4 h, or int(8 h / 3 / 64) x 64 with --swiglu), --kv-channels (h / heads),
    --group-query-attention --num-query-groups G (default 1; without the switch every head
    has its own K/V), --swiglu (else GELU), --normalization (LayerNorm), --position-
    embedding-type (learned_absolute), --max-position-embeddings (default: seq length),
    --disable-bias-linear, --untie-embeddings-and-output-weights;
    vocabulary: the tokenizer's size padded to a multiple of --make-vocab-size-divisible-by
    (128) x TP: --vocab-size N (NullTokenizer: N + 1), the GPT-2 BPE files (--vocab-file
    with --merge-file, or --tokenizer-type GPT2BPETokenizer: 50,257); --padded-vocab-size
    is taken as is. Other tokenizers need --vocab-size or --set model.vocab_size.

Contradictions Megatron refuses are refused here with one line: --fp16 with --bf16, both
virtual-pipeline flags, --tp-comm-overlap without sequence parallelism, --seq-length above
--max-position-embeddings, --recompute-method with selective recomputation. Flags simtrain
does not model are named in one warning; so are flags whose value is an unexpanded $VAR.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.megatron_script import Launch, launch_flags, read_script, unexpanded

INT_FLAGS = (
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
    "--num-virtual-stages-per-pipeline-rank", "--num-layers-per-virtual-pipeline-stage",
    "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
    "--micro-batch-size", "--global-batch-size", "--seq-length", "--num-layers", "--hidden-size", "--ffn-hidden-size",
    "--num-attention-heads", "--kv-channels", "--num-query-groups", "--padded-vocab-size", "--vocab-size",
    "--max-position-embeddings", "--make-vocab-size-divisible-by", "--recompute-num-layers",
)
FLOAT_FLAGS = ("--attention-dropout", "--hidden-dropout")
CHOICE_FLAGS = {
    "--recompute-granularity": {"selective": "selective", "full": "full"},
    "--normalization": {"RMSNorm": "rmsnorm", "LayerNorm": "layernorm"},
    "--position-embedding-type": {"rope": "rope", "learned_absolute": "learned"},
    "--attention-backend": {"flash": "fa2", "fused": "cudnn", "auto": "", "unfused": False, "local": False},
    "--cp-comm-type": {"p2p": "ring", "all_gather": "allgather"},
    "--recompute-method": {"uniform": "uniform", "block": "block"},
    "--fp8-format": {"hybrid": "fp8", "e4m3": "fp8"},
    # Megatron-Core's Fp8Recipe (transformer_config.py; default "delayed"); "tensorwise" is
    # Transformer Engine's Float8CurrentScaling. custom is not modelled.
    "--fp8-recipe": {"delayed": "delayed", "tensorwise": "current", "blockwise": "blockwise", "mxfp8": "mxfp8"},
}
TEXT_FLAGS = ("--tokenizer-type", "--vocab-file", "--merge-file", "--tokenizer-model")
SWITCHES = {
    "--sequence-parallel", "--use-distributed-optimizer", "--overlap-grad-reduce", "--recompute-activations",
    "--swiglu", "--group-query-attention", "--disable-bias-linear", "--untie-embeddings-and-output-weights",
    "--use-flash-attn", "--bf16", "--fp16", "--tp-comm-overlap", "--grad-reduce-in-bf16", "--use-tp-pp-dp-mapping",
    "--use-rotary-position-embeddings", "--fp8-param-gather",
}
MODEL_FLAGS = {
    "--num-layers", "--hidden-size", "--ffn-hidden-size", "--num-attention-heads", "--kv-channels",
    "--num-query-groups", "--padded-vocab-size", "--vocab-size", "--swiglu", "--normalization",
    "--disable-bias-linear", "--untie-embeddings-and-output-weights", "--group-query-attention",
    "--position-embedding-type", "--max-position-embeddings", "--use-rotary-position-embeddings",
    "--attention-dropout", "--hidden-dropout",
}
GPT2_BPE_VOCAB = 50257  # GPT-2's BPE vocabulary (gpt2-vocab.json), Megatron's GPT2BPETokenizer
OPT = "--megatron-args"


@dataclass
class MegatronFlags:
    """Parsed flags: values by flag, flags ignored, flags dropped for an unexpanded value."""

    known: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unexpanded: list[str] = field(default_factory=list)  # "--flag $VALUE" or a bare "$VAR"
    where: str = OPT
    name: str = "megatron"
    vocab_note: str = ""  # why the vocabulary is unknown (checked after --set)


def _value(where: str, flag: str, value: str) -> Any:
    if flag in CHOICE_FLAGS:
        choices = CHOICE_FLAGS[flag]
        if value not in choices:
            raise SimtrainError(f"{where}: {flag} {value!r}: not a choice simtrain models; use one of {', '.join(choices)}")
        return choices[value]
    if flag in TEXT_FLAGS:
        return value
    if flag in FLOAT_FLAGS:
        try:
            p = float(value)
        except ValueError:
            p = -1.0
        if not 0 <= p < 1:
            raise SimtrainError(f"{where}: {flag} {value!r}: expected a probability in [0, 1); write e.g. {flag} 0.1")
        return p
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0 or str(value).strip().lstrip("+") != str(n) or (n == 0 and flag != "--recompute-num-layers"):
        raise SimtrainError(f"{where}: {flag} {value!r}: expected a positive whole number; write e.g. {flag} 8")
    return n


def _misspelled(flag: str) -> str:
    """The modelled flag `flag` is one or two letters off (difflib ratio >= 0.92), or ""."""
    import difflib

    modelled = [*INT_FLAGS, *CHOICE_FLAGS, *TEXT_FLAGS, *FLOAT_FLAGS, *SWITCHES]
    near = difflib.get_close_matches(flag, modelled, n=1, cutoff=0.92)
    return near[0] if near else ""


def parse(tokens: list[str] | tuple[str, ...] | str, where: str = OPT) -> MegatronFlags:
    """Flags -> MegatronFlags. A text is read as a pasted block (megatron_script)."""
    if isinstance(tokens, str):
        tokens = launch_flags(tokens, where).tokens
    out = MegatronFlags(where=where)
    toks = list(tokens)
    i = 0
    while i < len(toks):
        tok = toks[i]
        i += 1
        if unexpanded(tok) and not tok.startswith("--"):
            out.unexpanded.append(tok)  # e.g. $EXTRA_ARGS: flags hidden in a variable
            continue
        if not tok.startswith("--"):
            raise SimtrainError(f"{where}: stray value {tok!r} (no flag before it); write flags as --name value")
        flag, eq, inline = tok.partition("=")
        if flag in INT_FLAGS or flag in CHOICE_FLAGS or flag in TEXT_FLAGS or flag in FLOAT_FLAGS:
            if eq:
                value = inline
            elif i < len(toks) and not toks[i].startswith("--"):
                value = toks[i]
                i += 1
            else:
                raise SimtrainError(f"{where}: {flag} needs a value; write e.g. {flag} {next(iter(CHOICE_FLAGS.get(flag, {'8': 0})))}")
            if unexpanded(value) and flag not in TEXT_FLAGS:
                out.unexpanded.append(f"{flag} {value}")
                continue
            out.known[flag] = _value(where, flag, value)
        elif flag in SWITCHES:
            if eq:
                raise SimtrainError(f"{where}: {flag} is a switch and takes no value; write {flag} alone")
            out.known[flag] = True
        else:
            near = _misspelled(flag)
            if near:
                raise SimtrainError(f"{where}: {flag}: not a Megatron-LM flag; did you mean {near}? (a misspelled flag "
                                    "would be ignored and the run would use the default)")
            out.ignored.append(flag)
            while i < len(toks) and not toks[i].startswith("--") and not eq:
                i += 1  # its values (some flags take several, e.g. --rampup-batch-size 16 16 5859375)
    return out


def read(text: str = "", script: str = "") -> MegatronFlags | None:
    """--megatron-script FILE and/or --megatron-args TEXT (the text's flags come later, so
    they win); None when neither is given."""
    tokens: list[str] = []
    where = OPT
    name = "megatron"
    if script:
        launch: Launch = read_script(script)
        tokens += launch.tokens
        where = f"--megatron-script {script!r}"
        from pathlib import Path

        name = Path(script).stem
    if text and text.strip():
        tokens += launch_flags(text, OPT).tokens
        where = OPT if not script else f"{where} and {OPT}"
    if not tokens:
        return None
    flags = parse(tokens, where)
    flags.name = name
    return flags


def warning_lines(flags: MegatronFlags) -> list[str]:
    out = []
    if flags.ignored:
        n = len(flags.ignored)
        out.append(f"simtrain: warning: {flags.where}: ignored {n} flag{'s' if n != 1 else ''} simtrain does not model: "
                   f"{' '.join(flags.ignored)}")
    if flags.unexpanded:
        n = len(flags.unexpanded)
        out.append(f"simtrain: warning: {flags.where}: {n} flag{'s' if n != 1 else ''} given by unexpanded shell "
                   f"variables, left as the scenario or Megatron's defaults have them (define them in the script or use "
                   f"--set): {', '.join(flags.unexpanded)}")
    return out


def _refuse(flags: MegatronFlags, what: str, fix: str) -> SimtrainError:
    return SimtrainError(f"{flags.where}: {what}; {fix}")


def _check(flags: MegatronFlags) -> None:
    k = flags.known
    if k.get("--fp16") and k.get("--bf16"):
        raise _refuse(flags, "--fp16 and --bf16 together: Megatron refuses them (arguments.py: assert not args.bf16)",
                      "keep one of them")
    if not (k.get("--fp16") or k.get("--bf16")):
        raise _refuse(flags, "neither --bf16 nor --fp16: Megatron then trains in fp32, which simtrain does not model",
                      "add --bf16 (or --fp16) as the run used")
    if "--num-layers-per-virtual-pipeline-stage" in k and "--num-virtual-stages-per-pipeline-rank" in k:
        raise _refuse(flags, "--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank "
                      "together: Megatron allows only one", "keep one of them")
    sp = k.get("--sequence-parallel") and k.get("--tensor-model-parallel-size", 1) > 1
    if k.get("--tp-comm-overlap") and not sp:
        raise _refuse(flags, "--tp-comm-overlap without sequence parallelism: Megatron refuses it (TP communication/GEMM "
                      "overlap needs --sequence-parallel and a tensor-parallel size above 1)",
                      "add --sequence-parallel or drop --tp-comm-overlap")
    seq, pos = k.get("--seq-length"), k.get("--max-position-embeddings")
    if seq and pos and pos < seq:
        raise _refuse(flags, f"--seq-length {seq} is above --max-position-embeddings {pos}: Megatron refuses it",
                      f"raise --max-position-embeddings to at least {seq}")
    if k.get("--recompute-method") and (k.get("--recompute-activations") or k.get("--recompute-granularity") == "selective"):
        raise _refuse(flags, "--recompute-method with selective recomputation: Megatron refuses it",
                      "drop --recompute-method or use --recompute-granularity full")
    for flag in ("--micro-batch-size", "--seq-length"):
        if flag not in k and not any(u.startswith(flag + " ") for u in flags.unexpanded):
            raise _refuse(flags, f"{flag} is missing: Megatron needs it", f"add {flag} N")


def _vocab(flags: MegatronFlags, tp: int) -> int:
    k = flags.known
    if "--padded-vocab-size" in k:
        return k["--padded-vocab-size"]
    tok = k.get("--tokenizer-type", "")
    if "--vocab-size" in k:
        size = k["--vocab-size"] + (1 if tok == "NullTokenizer" else 0)  # NullTokenizer adds its EOD token
    elif tok == "GPT2BPETokenizer" or (not tok and "--vocab-file" in k and "--merge-file" in k):
        size = GPT2_BPE_VOCAB
    else:
        what = f"--tokenizer-type {tok}" if tok else "no --vocab-size, --vocab-file/--merge-file or --tokenizer-type"
        flags.vocab_note = (f"{flags.where}: the vocabulary size comes from the tokenizer ({what}), which simtrain "
                            "cannot read; add --vocab-size N (before padding) or --set model.vocab_size=N")
        return 0
    multiple = k.get("--make-vocab-size-divisible-by", 128) * tp
    return math.ceil(size / multiple) * multiple


def model_table(flags: MegatronFlags) -> dict[str, Any]:
    """The [model] table of the flags, Megatron's defaults filling what they do not say."""
    k = flags.known
    for flag in ("--num-layers", "--hidden-size", "--num-attention-heads"):
        if flag not in k:
            raise _refuse(flags, f"model flags without {flag}: Megatron needs --num-layers, --hidden-size and "
                          "--num-attention-heads", f"add {flag} N")
    h, heads, layers = k["--hidden-size"], k["--num-attention-heads"], k["--num-layers"]
    swiglu = bool(k.get("--swiglu"))
    ffn = k.get("--ffn-hidden-size") or (int((4 * h * 2 / 3) / 64) * 64 if swiglu else 4 * h)
    if k.get("--num-query-groups") and not k.get("--group-query-attention"):
        flags.ignored.append("--num-query-groups (Megatron uses it only with --group-query-attention)")
    kv = k.get("--num-query-groups", 1) if k.get("--group-query-attention") else heads
    pos = "rope" if k.get("--use-rotary-position-embeddings") else k.get("--position-embedding-type", "learned")
    table: dict[str, Any] = {
        "name": f"{flags.name}-{layers}x{h}", "num_hidden_layers": layers, "hidden_size": h, "intermediate_size": ffn,
        "num_attention_heads": heads, "num_key_value_heads": kv, "mlp": "gated" if swiglu else "plain",
        "bias": not k.get("--disable-bias-linear"), "tie_word_embeddings": not k.get("--untie-embeddings-and-output-weights"),
        "norm": k.get("--normalization", "layernorm"), "position_embedding": pos,
        # Megatron's --attention-dropout and --hidden-dropout default to 0.1: its GPT trains with dropout
        "dropout": max(k.get("--attention-dropout", 0.1), k.get("--hidden-dropout", 0.1)),
    }
    if "--max-position-embeddings" in k or pos == "learned":  # learned positions: max_pos x h parameters
        table["max_position_embeddings"] = k.get("--max-position-embeddings", k.get("--seq-length", 0))
    if "--kv-channels" in k:
        table["head_dim"] = k["--kv-channels"]
    vocab = _vocab(flags, k.get("--tensor-model-parallel-size", 1))
    if vocab:
        table["vocab_size"] = vocab
    return table


def apply_megatron(data: dict[str, Any], flags: MegatronFlags) -> dict[str, Any]:
    """A copy of scenario `data` set as the flags describe the job (module docstring)."""
    _check(flags)
    k = flags.known
    data = copy.deepcopy(data)
    par, tr, sch, eng = (data.setdefault(s, {}) for s in ("parallel", "training", "schedule", "engine"))
    for s in (par, tr, sch, eng):
        if not isinstance(s, dict):
            raise SimtrainError(f"{flags.where}: the scenario's sections must be tables; fix the scenario file")
    tp, pp = k.get("--tensor-model-parallel-size", 1), k.get("--pipeline-model-parallel-size", 1)
    if any(f in k for f in MODEL_FLAGS):
        data["model"] = model_table(flags)
        # its vocabulary is padded already (model_table): the stack pads to the same multiple
        # (a no-op then), not to its own
        stack = data.setdefault("stack", {})
        if isinstance(stack, dict):
            stack["vocab_pad_multiple"] = k.get("--make-vocab-size-divisible-by", 128)
    # with --num-layers-per-virtual-pipeline-stage, vp (and so the schedule) follows from the
    # layer count of the final model, after --set: `finish` fills them in
    per_stage = "--num-layers-per-virtual-pipeline-stage" in k
    vp = 0 if per_stage else k.get("--num-virtual-stages-per-pipeline-rank", 1)
    par.update(tp=tp, pp=pp, cp=k.get("--context-parallel-size", 1), dp=0, vp=vp,
               sequence_parallel=bool(k.get("--sequence-parallel")) and tp > 1,
               zero=1 if k.get("--use-distributed-optimizer") else 0,
               overlap_grad_reduce=bool(k.get("--overlap-grad-reduce")),
               recompute="selective" if k.get("--recompute-activations") else k.get("--recompute-granularity", "none"),
               first_stage_layers=k.get("--decoder-first-pipeline-num-layers", -1),
               last_stage_layers=k.get("--decoder-last-pipeline-num-layers", -1),
               cp_algo=k.get("--cp-comm-type", "ring"),
               order="tp-cp-pp-dp" if k.get("--use-tp-pp-dp-mapping") else "tp-cp-dp-pp")
    if "--micro-batch-size" in k:
        par["micro_batch"] = k["--micro-batch-size"]
    backend = k.get("--attention-backend", "")
    if k.get("--use-flash-attn") or backend:  # flash (FlashAttention) or fused (cuDNN) through TE
        par.update(flash_attention=True, attention_kernel="fa2" if k.get("--use-flash-attn") else backend)
    elif backend is False:  # unfused or local: QK^T, softmax and AV as separate kernels
        par["flash_attention"] = False
    tr["global_batch"] = k.get("--global-batch-size", 0)
    if "--seq-length" in k:
        tr["seq_len"] = k["--seq-length"]
    tr["precision"] = "fp16" if k.get("--fp16") else ("fp8" if k.get("--fp8-format") else "bf16")
    # the recipe applies with --fp8-format only (Megatron ignores it without)
    tr["fp8_recipe"] = k.get("--fp8-recipe", "delayed") if tr["precision"] == "fp8" else "delayed"
    tr["grad_precision"] = "bf16" if k.get("--grad-reduce-in-bf16") else "fp32"
    if tr["precision"] == "fp8" and k.get("--fp8-param-gather"):
        tr["fp8_params"] = True
    sch.update(name="" if per_stage else ("interleaved" if vp > 1 else "1f1b"), n=0, file="")
    eng["overlap_tp_comm"] = bool(k.get("--tp-comm-overlap"))
    data.setdefault("name", flags.name)
    return data


def finish(data: dict[str, Any], flags: MegatronFlags) -> dict[str, Any]:
    """After --set: the virtual stages of --num-layers-per-virtual-pipeline-stage from the
    final model's layer count (unless --set gave parallel.vp), the schedule that goes with
    them, and the vocabulary check."""
    from simtrain.scenario.models import model_config

    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if flags.vocab_note and not model.get("vocab_size"):
        raise SimtrainError(flags.vocab_note)
    par, sch = data.get("parallel", {}), data.get("schedule", {})
    per_stage = flags.known.get("--num-layers-per-virtual-pipeline-stage")
    if per_stage and par.get("vp") == 0:
        layers, pp = model_config(model).num_hidden_layers, par.get("pp", 1)
        if layers % (pp * per_stage):
            raise _refuse(flags, f"--num-layers-per-virtual-pipeline-stage {per_stage}: {layers} layers do not split into "
                          f"pipeline size {pp} x {per_stage} layers per virtual stage (Megatron refuses it)",
                          f"use a value dividing {layers // pp if layers % pp == 0 else layers}")
        par["vp"] = layers // (pp * per_stage)
    if sch.get("name") == "":
        sch["name"] = "interleaved" if par.get("vp", 1) > 1 else "1f1b"
    return data
