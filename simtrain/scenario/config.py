"""Scenario files: TOML in, frozen dataclasses out. Defaults live in these dataclasses
(the [model] one in simtrain.scenario.models) and nowhere else.

A scenario has three input families (as in Calculon): the model (`[model]`), the system
(`[cluster]`) and the execution (`[parallel]`, `[training]`, `[schedule]`, `[engine]`).
Unknown keys are rejected with a suggestion; every value is checked once, here.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtrain.scenario.device_keys import DeviceTable, device_table
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import _parse_value, _suggest, parse_dataclass
from simtrain.scenario.files import read_toml, resolve_path
from simtrain.scenario.models import ModelConfig, model_config
from simtrain.scenario.stack import DEFAULT_STACK, Stack, build_stack, load_stack_file


@dataclass(frozen=True)
class ClusterConfig:
    topology: str = "dgx-h100"  # file in topologies/ (without .toml) or a path
    gpus: int = 0  # 0: tp * cp * pp * dp
    device: str = ""  # override the topology's device type
    # Device-to-device speed variation of the fleet: relative standard deviation of the
    # sustained compute speed of identical GPUs. A synchronous step runs at the pace of the
    # slowest of its N devices, whose expected slowdown is sigma * E[max of N standard
    # normals] (Blom's approximation): +1.6% at 8 GPUs, +4% at 8,192 with the default.
    # 0.011: Sinha et al. 2022 (SC22, "Not All GPUs Are Created Equal", arXiv:2208.11035)
    # measured 8% average performance variation (range across the GPUs of a cluster,
    # thousands of identical GPUs) on Summit, Vortex, Frontera, Longhorn and Corona; for
    # N ~ 1,000-27,000 the expected range of a normal sample is ~7 sigma: sigma ~ 8%/7.
    # 0 turns it off; [whatif] random_slowdown_sigma draws explicit per-device factors instead.
    gpu_speed_sigma: float = 0.011
    # Software stack: a file in stacks/ (without .toml) or a path; "" = the default stack
    # (simtrain.scenario.stack.DEFAULT_STACK). Its values can be overridden in [stack].
    stack: str = ""
    # Hardware what-ifs on the topology's links, applied to the loaded file (so "2x
    # InfiniBand" is --set cluster.nic_gbps=800, no copy of the file); a tier the topology
    # lacks is refused (simtrain.hardware.tiers). 0 (latencies: -1): the file's value.
    nvlink_gbps: float = 0.0  # per device per direction, Gb/s
    nvlink_latency_us: float = -1.0
    nvlink_efficiency: float = 0.0  # achievable fraction of the wire rate
    nic_gbps: float = 0.0  # per NIC per direction, Gb/s
    nic_latency_us: float = -1.0
    nic_efficiency: float = 0.0
    oversubscription: float = 0.0  # fat tree leaf tier: downlink / uplink bandwidth
    spine_oversubscription: float = 0.0  # fat tree spine tier (3 tiers)
    fabric_latency_us: float = -1.0  # fat tree switch-to-switch hop
    ici_gbps: float = 0.0  # TPU ICI per link per direction, Gb/s
    ici_latency_us: float = -1.0
    ici_efficiency: float = 0.0


# ClusterConfig fields that change the topology's links (simtrain.hardware.tiers maps them)
TIER_FIELDS = ("nvlink_gbps", "nvlink_latency_us", "nvlink_efficiency", "nic_gbps", "nic_latency_us", "nic_efficiency",
               "oversubscription", "spine_oversubscription", "fabric_latency_us", "ici_gbps", "ici_latency_us",
               "ici_efficiency")


def tier_overrides(cluster: ClusterConfig) -> dict[str, float]:
    """The link what-ifs a cluster section sets (fields away from their defaults)."""
    default = ClusterConfig()
    return {f: getattr(cluster, f) for f in TIER_FIELDS if getattr(cluster, f) != getattr(default, f)}


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
    recompute: str = "none"  # "none", "selective" (Megatron: attention core), "op-selective" (torchtitan: every 2nd matmul and the elementwise ops) or "full"
    # What "selective" recomputes, as Megatron-Core's --recompute-modules (empty: its default,
    # core_attn): core_attn, layernorm, mla_up_proj, mlp, moe_act (simtrain.workload.recompute)
    recompute_modules: tuple[str, ...] = ()
    zero: int = 1  # 0: plain DP all-reduce; 1/2: distributed optimizer (reduce-scatter + all-gather); 3: FSDP
    reshard_after_forward: bool = True  # zero = 3: torch FSDP frees gathered parameters after each layer's use
    # (all-gather again in backward, every micro-batch); false = Llama 3's FSDP: gathered once per step
    first_stage_layers: int = -1  # -1: even split; else layers on the first virtual stage
    last_stage_layers: int = -1  # -1: even split; else layers on the last virtual stage
    # Layers per virtual stage in model order (pp*vp entries); empty: the balanced split of
    # simtrain.scenario.layout.split_layers (the end stages take the shortfall)
    stage_layers: tuple[int, ...] = ()
    flash_attention: bool = True  # FlashAttention kernels (False: unfused QK^T, softmax, AV as in Megatron 2021)
    # fused-attention kernel (measured curves in simtrain/data/attention.toml): "fa2",
    # "cudnn", "fa3" (Hopper only), "fa1", "triton" (flash-attn's Triton kernel), "xformers"
    attention_kernel: str = "fa2"
    overlap_grad_reduce: bool = True  # bucketed DP reduction overlapped with the backward pass
    # Expert parallelism (mixture-of-experts models): the routed experts of each MoE layer
    # are split over `ep` ranks, which exchange tokens by all-to-all (simtrain.network.alltoall).
    # EP groups are carved from the TP x CP x DP ranks of a pipeline stage, experts' own
    # tensor parallelism `etp` (1, or tp) innermost: see simtrain.scenario.layout.
    ep: int = 1
    etp: int = 1
    # Each token's dispatch reaches at most this many nodes, sent once per node over the
    # network and forwarded over NVLink inside it (DeepSeek-V3's node-limited routing and
    # its dispatch kernels: 4); 0 = a plain all-to-all, one copy per (token, expert) pair.
    ep_node_limit: int = 0
    # rank placement, innermost axis first (Megatron's `order`; simtrain.scenario.layout)
    order: str = "tp-cp-pp-dp"


@dataclass(frozen=True)
class TrainingConfig:
    seq_len: int = 2048
    global_batch: int = 0  # sequences per step; 0: dp * micro_batch (one micro-batch per replica)
    precision: str = "bf16"
    # With precision = "fp8": Transformer Engine's scaling recipe (simtrain.workload.fp8):
    # "delayed" (per-tensor scales from an amax history; Megatron's --fp8-recipe delayed, the
    # NeMo 24.x default), "current" (per-tensor scales from each tensor's own amax; Megatron's
    # "tensorwise", Megatron-Bridge's fp8_cs), "blockwise" (1x128 / 128x128 block scales,
    # DeepSeek-V3's scheme; Megatron's "blockwise", Bridge's fp8_ss; Hopper only), "mxfp8"
    # (1x32 E8M0 block scales; Megatron's "mxfp8", Bridge's fp8_mx; Blackwell only).
    fp8_recipe: str = "delayed"
    # With precision = "fp8": the model's linear weights held only in FP8 (Transformer
    # Engine's fp8_model_init; Megatron-Core's --fp8-param-gather, NeMo 2's fp8_params, on in
    # its bf16_with_fp8_mixed recipe): no bf16 copy beside the FP8 weight and its transpose,
    # and the distributed optimizer all-gathers them in FP8 (1 B instead of 2). Dense models.
    fp8_params: bool = False
    # Gradient buffers and their data-parallel reduction: "fp32" (Megatron-LM's main_grad,
    # forced for bf16 runs) or "bf16" (torch FSDP's default reduce dtype, Megatron-Core's
    # --grad-reduce-in-bf16), or "fp16" (DeepSpeed ZeRO-1 of fp16 runs, 2021-2022: the fp16
    # param.grad reduced as is, zero/stage2.py @v0.5.4): 4 or 2 bytes per parameter held and reduced.
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
    # DualPipe's overlapped F&B pairs hide their expert all-to-alls behind the pair's compute
    # (DeepSeek-V3 §3.2.1); false runs them exposed, as outside the pairs (a what-if)
    overlap_ep_comm: bool = True


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
    # Mixture of experts: the hottest expert's share of a layer's routed (token, expert)
    # assignments (0: balanced, 1/num_experts each). Its EP rank receives and computes more,
    # and every rank waits for it at the combine. Needs no per-rank mode.
    expert_imbalance: float = 0.0


@dataclass(frozen=True)
class Scenario:
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    whatif: WhatIfConfig = field(default_factory=WhatIfConfig)
    stack: Stack = field(default_factory=Stack)
    device: DeviceTable = field(default_factory=DeviceTable)  # [device]: changes to the device (device_keys)
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
    "device": DeviceTable,  # keys: simtrain.scenario.device_keys.DEVICE_KEYS
}
TOP_LEVEL = ("name", "description")
STACK_SECTION = "stack"  # the scenario's overrides of its software stack's values
# Keys that moved; a scenario that still uses one gets a line saying where it went.
MOVED = {"cluster.sustained_fraction": "stack.sustained_fraction"}


def build_section(section: str, data: dict[str, Any], base: Any = None) -> Any:
    return parse_dataclass(SECTIONS[section], data, section, base)


def apply_overrides(data: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """`overrides`: "section.key=value" strings (TOML values, as --set), or a dict
    {"section.key": value} of Python values."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, dict):
        overrides = [(str(k), v) for k, v in overrides.items()]
    for item in overrides:
        if isinstance(item, tuple):  # from a dict: the value is already a Python value
            key, value = item
            section, dot, name = key.partition(".")
            if not dot and section in TOP_LEVEL:
                data[section] = value
                continue
            if not dot or (section not in SECTIONS and section != STACK_SECTION):
                raise SimtrainError(f"overrides {key!r}: expected 'section.key' with a section among {', '.join(SECTIONS)}, "
                                    f"{STACK_SECTION}; {_suggest(section, list(SECTIONS) + [STACK_SECTION])}")
            if not isinstance(data.setdefault(section, {}), dict):
                raise bad(section, data[section], "expected a table", f"write [{section}] followed by key = value lines")
            data[section][name] = list(value) if isinstance(value, tuple) else value
            continue
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
        if section not in SECTIONS and section != STACK_SECTION:
            raise SimtrainError(
                f"--set {item!r}: unknown section {section!r}; {_suggest(section, list(SECTIONS) + [STACK_SECTION])}"
            )
        data.setdefault(section, {})[name] = _parse_value(value.strip())
    return data


def _stack_and_defaults(data: dict[str, Any], source: str = "") -> tuple[Stack, dict[str, dict[str, Any]]]:
    cluster = data.get("cluster", {})
    name = cluster.get("stack", "") if isinstance(cluster, dict) else ""
    if not isinstance(name, str):
        raise bad("cluster.stack", name, "expected a string", 'write stack = "megatron-core" (a file in stacks/) or a path')
    file_values, defaults, path = load_stack_file(name or DEFAULT_STACK, near=source or None)
    overrides = data.get(STACK_SECTION, {})
    if not isinstance(overrides, dict):
        raise bad(STACK_SECTION, overrides, "expected a table", "write [stack] followed by key = value lines")
    for section, table in defaults.items():
        if section not in SECTIONS or section in ("model", "cluster"):
            raise SimtrainError(
                f"stack {path.name}: [defaults.{section}] is not a scenario section a stack may set; "
                f"use one of parallel, training, schedule, engine"
            )
        try:  # every default checked, also one the scenario sets itself (a typo is the file's to fix)
            build_section(section, table)
        except SimtrainError as e:
            raise SimtrainError(f"stack {path.name} [defaults.{section}]: {e}") from None
    return build_stack(file_values, overrides, str(path)), defaults


def scenario_from_dict(data: dict[str, Any], name: str = "scenario", source: str = "") -> Scenario:
    if not isinstance(data, dict):
        raise SimtrainError(
            f"scenario: expected a table of sections (dict), got {type(data).__name__}; pass a path, a catalog name or a dict"
        )
    for key in data:
        if key not in SECTIONS and key not in TOP_LEVEL and key != STACK_SECTION:
            raise SimtrainError(
                f"unknown section [{key}] in the scenario: {_suggest(key, list(SECTIONS) + list(TOP_LEVEL) + [STACK_SECTION])}"
            )
        if key in TOP_LEVEL and not isinstance(data[key], str):  # printed as text in every report
            raise bad(key, data[key], "expected a string", f'write {key} = "..." in quotes')
    for old_key, new_key in MOVED.items():
        section, _, key = old_key.partition(".")
        raw = data.get(section)
        if isinstance(raw, dict) and key in raw:
            sec2, _, key2 = new_key.partition(".")
            raise bad(old_key, raw[key], f"moved to the software stack as {new_key}",
                      f"write [{sec2}] {key2} = {raw[key]} (or --set {new_key}={raw[key]})")
    stack, defaults = _stack_and_defaults(data, source)
    sections = {}
    for section in SECTIONS:
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise bad(section, raw, "expected a table", f"write [{section}] followed by key = value lines")
        raw = {**defaults.get(section, {}), **raw}
        if section == "model":
            sections[section] = model_config(raw)
        elif section == "device":
            sections[section] = device_table(raw)
        else:
            sections[section] = build_section(section, raw)
    _check_recompute_modules(sections["parallel"], sections["model"])
    if stack.tp_overlap_sms and not (sections["engine"].overlap_tp_comm and sections["parallel"].tp > 1):
        stack = dataclasses.replace(stack, tp_overlap_sms=())  # no overlapped TP communication: no SMs taken
    # PyTorch's TP: DTensor's sequence-dim copies without async TP, the reduction kernel with it
    overlapped = sections["engine"].overlap_tp_comm
    if (stack.tp_shard_dim_copies and overlapped) or ((stack.async_tp_reduce or stack.async_tp_split_gemms)
                                                      and not overlapped):
        stack = dataclasses.replace(stack, tp_shard_dim_copies=stack.tp_shard_dim_copies and not overlapped,
                                    async_tp_reduce=stack.async_tp_reduce and overlapped,
                                    async_tp_split_gemms=stack.async_tp_split_gemms and overlapped)
    return Scenario(
        **sections,
        stack=stack,
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        source=source,
    )


def _check_recompute_modules(par: ParallelConfig, model: Any) -> None:
    mods = par.recompute_modules
    if mods and par.recompute != "selective":
        raise bad("parallel.recompute_modules", list(mods), f"applies to recompute = \"selective\" only "
                  f"(recompute is {par.recompute!r})", 'set parallel.recompute = "selective" or remove the key')
    if "mla_up_proj" in mods and not model.kv_lora_rank:
        raise bad("parallel.recompute_modules", list(mods), f"mla_up_proj needs multi-head latent attention "
                  f"(model {model.name!r} has none)", "remove mla_up_proj")
    if "moe_act" in mods and not model.num_experts:
        raise bad("parallel.recompute_modules", list(mods), f"moe_act needs a mixture-of-experts model "
                  f"(model {model.name!r} has no experts)", "remove moe_act")


DEFAULT_SCENARIO = "llama3-405b-8k"
NEUTRAL_BASE: dict[str, Any] = {"name": "megatron", "description": "from Megatron-LM flags"}  # simtrain's defaults


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """A Scenario back as the dict of its TOML file (every key explicit)."""
    out: dict[str, Any] = {"name": s.name, "description": s.description}
    for section in SECTIONS:
        obj = getattr(s, section)
        out[section] = obj.as_dict() if section == "device" else dataclasses.asdict(obj)
    out[STACK_SECTION] = dataclasses.asdict(s.stack)  # the stack as resolved, [stack] changes included
    if out["model"].get("hf_config"):
        out["model"].pop("name", None)  # named after the file again
    return out


def load_data(source: Any = None, overrides: Any = (), megatron: Any = None) -> tuple[dict[str, Any], str]:
    """The scenario as a dict, and the file it came from ("" for none), in the order the
    CLI applies its inputs: the source (a catalog name or path, a dict of TOML tables, a
    Scenario, or None: the default scenario, or a neutral base under Megatron flags), then
    Megatron flags (simtrain.scenario.megatron_args), then `overrides` ("section.key=value"
    strings, or a {"section.key": value} dict)."""
    path = ""
    if isinstance(source, Scenario):
        data, path = scenario_to_dict(source), source.source
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
    elif source is None and megatron is not None:
        data = dict(NEUTRAL_BASE, name=megatron.name)
    elif source is not None and not isinstance(source, (str, Path)):
        raise SimtrainError(f"scenario = {source!r}: expected a catalog name, a path, a dict of TOML tables or a "
                            "Scenario; give e.g. \"llama3-405b-8k\"")
    else:
        p = resolve_path(DEFAULT_SCENARIO if source is None else source, "scenarios", "scenario", "scenario")
        data, path = read_toml(p, "scenario"), str(p)
        data.setdefault("name", p.stem)
    if megatron is not None:
        from simtrain.scenario.megatron_args import apply_megatron, finish

        data = finish(apply_overrides(apply_megatron(data, megatron), overrides), megatron)
    else:
        data = apply_overrides(data, overrides)
    return data, path


def load_scenario(source: Any = None, overrides: Any = (), megatron: Any = None) -> Scenario:
    """Load a scenario (catalog name, path, dict or Scenario) and apply Megatron flags and
    `section.key=value` overrides (see load_data)."""
    if isinstance(source, Scenario) and not overrides and megatron is None:
        return source
    data, path = load_data(source, overrides, megatron)
    return scenario_from_dict(data, name=str(data.get("name", "scenario")), source=path)
