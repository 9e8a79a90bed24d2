"""Scenario files: TOML in, frozen dataclasses out. Defaults live here and nowhere else.

A scenario has three input families (as in Calculon): the model (`[model]`), the system
(`[cluster]`) and the execution (`[parallel]`, `[training]`, `[schedule]`, `[engine]`).
Unknown keys are rejected with a suggestion; every value is checked once, here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from simtrain.errors import SimtrainError, bad

PACKAGE_DIR = Path(__file__).resolve().parent


def catalog_dir(name: str) -> Path:
    """Folder of a user-editable catalog (scenarios/, topologies/, schedules/).

    Looked up in $SIMTRAIN_HOME, then the source checkout next to the package, then the
    current directory.
    """
    roots = [os.environ.get("SIMTRAIN_HOME"), PACKAGE_DIR.parent, Path.cwd()]
    for root in roots:
        if root and (Path(root) / name).is_dir():
            return Path(root) / name
    return PACKAGE_DIR.parent / name


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
    position_embedding: str = "rope"  # "rope" or "learned" (adds max_position_embeddings x hidden params)
    max_position_embeddings: int = 0
    tie_word_embeddings: bool = False
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm"
    hf_config: str = ""  # path of a Hugging Face config.json to read the shape from (simtrain/hf.py)


@dataclass(frozen=True)
class ClusterConfig:
    topology: str = "dgx-h100"  # file in topologies/ (without .toml) or a path
    gpus: int = 0  # 0: tp * cp * pp * dp
    device: str = ""  # override the topology's device type
    # Fraction of the device's isolated-kernel throughput (GEMM and fused attention) the
    # training stack sustains; 0: the device catalog's value (simtrain/devices.py). It folds
    # the software stack in with the power cap: the H100 catalog value is fitted on Meta's
    # stack (Llama 3 Table 4 row 1); scenarios for other stacks say what they use and why.
    sustained_fraction: float = 0.0


@dataclass(frozen=True)
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    dp: int = 0  # 0: gpus / (tp * cp * pp)
    cp: int = 1
    cp_algo: str = "allgather"  # "allgather" (Llama 3: K/V all-gather, exposed) or "ring" (overlapped with attention)
    vp: int = 1  # virtual stages (model chunks) per pipeline rank
    micro_batch: int = 1  # sequences per micro-batch
    sequence_parallel: bool = False  # Korthikanti et al. 2022: TP all-reduce -> reduce-scatter + all-gather
    recompute: str = "none"  # "none", "selective" or "full" activation recomputation
    zero: int = 1  # 0: plain DP all-reduce; 1/2: distributed optimizer (reduce-scatter + all-gather); 3: FSDP
    reshard_after_forward: bool = True  # zero = 3: torch FSDP frees gathered parameters after each layer's use
    # (all-gather again in backward, every micro-batch); false = Llama 3's FSDP: gathered once per step
    first_stage_layers: int = -1  # -1: even split; else layers on the first virtual stage
    last_stage_layers: int = -1  # -1: even split; else layers on the last virtual stage
    flash_attention: bool = True  # FlashAttention kernels (False: unfused QK^T, softmax, AV as in Megatron 2021)
    attention_kernel: str = "fa2"  # fused-attention generation: "fa2", "cudnn" or "fa3" (Hopper only)
    overlap_grad_reduce: bool = True  # bucketed DP reduction overlapped with the backward pass


@dataclass(frozen=True)
class TrainingConfig:
    seq_len: int = 2048
    global_batch: int = 0  # sequences per step; 0: dp * micro_batch (one micro-batch per replica)
    precision: str = "bf16"
    # Gradient buffers and their data-parallel reduction: "fp32" (Megatron-LM's main_grad,
    # forced for bf16 runs) or "bf16" (torch FSDP's default reduce dtype, Megatron-Core's
    # --grad-reduce-in-bf16): 4 or 2 bytes per parameter held and reduced.
    grad_precision: str = "fp32"
    # Documents packed into each sequence under a document attention mask (Llama 3 §3.2:
    # no attention across documents), each this many tokens; 0: one document per sequence.
    # A FlashAttention kernel then skips the cross-document blocks: causal attention work
    # per sequence falls from s^2/2 to s*d/2 (x d/s).
    document_length: int = 0


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "1f1b"
    n: int = 0  # llama3 schedule: contiguous micro-batches per stage (0: pp)
    file: str = ""  # explicit schedule text file (schedules/ name or path)


@dataclass(frozen=True)
class EngineConfig:
    mode: str = "symmetric"  # "symmetric" (one representative per class of identical ranks) or "per-rank"
    comm: str = "network"  # "network" or "free" (zero-cost communication, for what-ifs and closed forms)
    collective_algo: str = "auto"  # "auto", "ring", "tree", "hierarchical", "torus"
    overlap_tp_comm: bool = False  # tensor-parallel collectives hidden behind compute
    async_tp_backward: bool = True  # backward TP all-reduce overlapped with weight-gradient GEMMs
    # (Megatron's --async-tensor-model-parallel-allreduce, late 2021 on); false: SC21-era, exposed
    async_p2p: bool = True  # sends overlap the sender's next compute; false: the sender waits (SC21-era)
    detail: str = "auto"  # timeline records per "layer" segment, per "action", or "auto" (action above 512 devices)


@dataclass(frozen=True)
class WhatIfConfig:
    """Stragglers and degraded hardware (need engine.mode = "per-rank")."""

    slow_devices: tuple[int, ...] = ()  # global ranks whose compute is slowed
    slowdown: float = 1.0  # compute-time factor for slow_devices (1.2 = 20% slower)
    random_slow_fraction: float = 0.0  # share of all devices slowed at random (seeded)
    random_slowdown_sigma: float = 0.0  # per-device compute factor 1 + |N(0, sigma)| for every device
    compute_jitter: float = 0.0  # per-action relative jitter of compute time, N(0, jitter), clipped at 0
    seed: int = 0
    degraded_links: tuple[str, ...] = ()  # links "u-v" (both directions), e.g. "0-leaf0"
    link_bandwidth_factor: float = 1.0  # capacity factor for degraded_links (0.5 = half bandwidth)
    failed_links: tuple[str, ...] = ()  # links "u-v" that carry nothing; traffic reroutes


@dataclass(frozen=True)
class Scenario:
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    whatif: WhatIfConfig = field(default_factory=WhatIfConfig)
    name: str = "scenario"
    description: str = ""
    source: str = ""  # path of the file it came from


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "cluster": ClusterConfig,
    "parallel": ParallelConfig,
    "training": TrainingConfig,
    "schedule": ScheduleConfig,
    "engine": EngineConfig,
    "whatif": WhatIfConfig,
}
TOP_LEVEL = ("name", "description")

CHOICES: dict[str, tuple[str, ...]] = {
    "model.mlp": ("gated", "plain"),
    "model.position_embedding": ("rope", "learned"),
    "model.norm": ("rmsnorm", "layernorm"),
    "parallel.recompute": ("none", "selective", "full"),
    "parallel.cp_algo": ("allgather", "ring"),
    "parallel.attention_kernel": ("fa2", "cudnn", "fa3"),
    "engine.mode": ("symmetric", "per-rank"),
    "engine.detail": ("auto", "layer", "action"),
    "engine.comm": ("network", "free"),
    "engine.collective_algo": ("auto", "ring", "tree", "hierarchical", "torus"),
    "training.precision": ("bf16", "fp16"),
    "training.grad_precision": ("fp32", "bf16"),
}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid keys: {', '.join(valid)}"


def _coerce(path: str, value: Any, typ: type) -> Any:
    if typing.get_origin(typ) is tuple:  # TOML arrays, kept as tuples so scenarios stay hashable
        inner = typing.get_args(typ)[0]
        if not isinstance(value, (list, tuple)):
            raise bad(path, value, "expected a list", f"write {path.split('.')[-1]} = [ ... ]")
        return tuple(_coerce(f"{path}[{i}]", v, inner) for i, v in enumerate(value))
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad(path, value, "expected true or false", f"write {path.split('.')[-1]} = true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad(path, value, "expected a whole number", f"write e.g. {path.split('.')[-1]} = 8")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(path, value, "expected a number", f"write e.g. {path.split('.')[-1]} = 1.5")
        if not math.isfinite(value):  # TOML allows nan and inf; no input field means them
            raise bad(path, value, "must be a finite number", f"write e.g. {path.split('.')[-1]} = 1.5")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise bad(path, value, "expected a string", f'write {path.split(".")[-1]} = "..." in quotes')
        if path in CHOICES and value not in CHOICES[path]:
            raise bad(path, value, "not a valid choice", f"use one of {', '.join(CHOICES[path])}")
        return value
    return value


def parse_dataclass(cls: type, data: dict[str, Any], prefix: str, base: Any = None) -> Any:
    """Check keys and value types of one TOML table against a frozen dataclass."""
    hints = get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            raise SimtrainError(f"unknown key {prefix}.{key} = {value!r}: {_suggest(key, valid)}")
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    base = base if base is not None else cls()
    return dataclasses.replace(base, **kwargs)


def build_section(section: str, data: dict[str, Any], base: Any = None) -> Any:
    return parse_dataclass(SECTIONS[section], data, section, base)


def _parse_value(text: str) -> Any:
    """`--set` values are TOML values; bare words that are not valid TOML are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SimtrainError(
                f"--set {item!r}: expected section.key=value; write e.g. --set parallel.tp=4"
            )
        section, dot, name = key.partition(".")
        if not dot:
            if section in TOP_LEVEL:
                data[section] = value
                continue
            raise SimtrainError(
                f"--set {item!r}: expected section.key=value with a section among {', '.join(SECTIONS)}; write e.g. --set parallel.tp=4"
            )
        if section not in SECTIONS:
            raise SimtrainError(
                f"--set {item!r}: unknown section {section!r}; {_suggest(section, list(SECTIONS))}"
            )
        data.setdefault(section, {})[name] = _parse_value(value.strip())
    return data


def resolve_path(source: str | Path, catalog: str, what: str, field_name: str) -> Path:
    if not str(source).strip():
        available = sorted(x.stem for x in catalog_dir(catalog).glob("*.toml"))
        raise bad(field_name, str(source), "is empty", f"give a {what} file path or one of: {', '.join(available)}")
    p = Path(source)
    candidates = [p] if p.suffix else [p.with_suffix(".toml"), p]
    candidates += [catalog_dir(catalog) / p.name, catalog_dir(catalog) / f"{p.name}.toml"]
    for c in candidates:
        if c.is_file():
            return c
    available = sorted(x.stem for x in catalog_dir(catalog).glob("*.toml"))
    raise bad(
        field_name, str(source), f"no such {what} file",
        f"give a path to a .toml file or one of: {', '.join(available) or '(catalog is empty)'}",
    )


def read_toml(path: Path, field_name: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not valid TOML ({e}); fix the file's syntax") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not UTF-8 text; give a TOML file") from None
    except OSError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: cannot read it ({e.strerror}); check the path") from None


def scenario_from_dict(data: dict[str, Any], name: str = "scenario", source: str = "") -> Scenario:
    for key in data:
        if key not in SECTIONS and key not in TOP_LEVEL:
            raise SimtrainError(
                f"unknown section [{key}] in the scenario: {_suggest(key, list(SECTIONS) + list(TOP_LEVEL))}"
            )
    sections = {}
    for section in SECTIONS:
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise bad(section, raw, "expected a table", f"write [{section}] followed by key = value lines")
        if section == "model":
            from simtrain.models import model_config

            sections[section] = model_config(raw)
        else:
            sections[section] = build_section(section, raw)
    return Scenario(
        **sections,
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        source=source,
    )


DEFAULT_SCENARIO = "llama3-405b-8k"


def load_scenario(source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario by catalog name or path and apply `section.key=value` overrides."""
    source = DEFAULT_SCENARIO if source is None else source  # "" is an error, not the default
    path = resolve_path(source, "scenarios", "scenario", "scenario")
    data = read_toml(path, "scenario")
    data = apply_overrides(data, list(overrides))
    return scenario_from_dict(data, name=path.stem, source=str(path))
