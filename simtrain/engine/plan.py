"""Scenario -> Plan: everything the engine needs, computed once, as plain data.

The plan holds the layout, the topology, the schedule (per-rank action lists), the work
of every virtual stage (layers, per-layer costs, embedding/output layer), the bytes of
every transfer, and which devices the engine simulates (`Plan.classes`,
simtrain.engine.symmetry): in symmetric mode one representative per class of devices that
behave alike (per pipeline rank without what-ifs: data-parallel replica 0, CP rank 0, TP
rank 0), whose collectives carry the traffic of every member's groups; in per-rank mode
every device.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

from dataclasses import dataclass, field

from simtrain import schedule as sched
from simtrain.schedule.constraints import llama3_default_n
from simtrain.engine import symmetry, whatif
from simtrain.engine.symmetry import Classes
from simtrain.engine.tpalone import tp_gather_seconds
from simtrain.hardware.devices import FAMILY, Device, apply_device_table
from simtrain.hardware.load import load_topology
from simtrain.hardware.topology import Topology
from simtrain.scenario.config import Scenario, tier_overrides
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.files import resolve_path
from simtrain.scenario.layout import Coord, Layout, make_layout, split_layers
from simtrain.scenario.models import moe_layer_flags
from simtrain.workload.kernels import check_attention_kernel
from simtrain.workload.costs import (EndCost, LayerCost, embedding_cost, head_cost, layer_cost, mtp_cost,
                                    optimizer_time)
from simtrain.workload.flops import ModelStats, attended_length, stats
from simtrain.workload.moe import MoECost, check_imbalance, expert_params_per_layer, moe_layer_costs
from simtrain.workload import fp8 as FP8
from simtrain.workload import zero3 as Z3
from simtrain.workload.memory import grad_element_bytes


@dataclass(frozen=True)
class StageWork:
    """Work of one virtual stage for one micro-batch on one TP rank."""

    index: int
    layers: int
    layer: LayerCost
    embed: EndCost | None
    head: EndCost | None
    params: float  # parameters this virtual stage holds on one TP rank
    grad_bytes_per_layer: float  # gradient bytes one TP rank reduces per layer
    end_grad_bytes: float  # gradient bytes of the embedding / output layer on this rank
    # Mixture of experts: `layer` is the MoE layer, `moe` its MLP block in parts; the first
    # `dense_layers` of the stage's layers are dense (`dense`, DeepSeek's first k layers).
    # Expert weights (part of `params`) are reduced over the "edp" group, not DP.
    moe: MoECost | None = None
    dense: LayerCost | None = None
    dense_layers: int = 0
    expert_params: float = 0.0  # routed-expert parameters this stage holds on one rank
    expert_grad_bytes_per_layer: float = 0.0  # of an MoE layer, reduced over the edp group
    dense_grad_bytes_per_layer: float = 0.0  # of a dense layer of an MoE model

    @property
    def model_flops(self) -> float:
        f = (self.layers - self.dense_layers) * self.layer.model_flops
        if self.dense_layers:
            f += self.dense_layers * self.dense.model_flops
        for e in (self.embed, self.head):
            if e:
                f += e.model_flops
        return f

    @property
    def recompute_flops(self) -> float:
        dense = self.dense_layers * self.dense.recompute_flops if self.dense_layers else 0.0
        return (self.layers - self.dense_layers) * self.layer.recompute_flops + dense


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    layout: Layout
    topology: Topology
    device: Device
    model: ModelStats
    schedule: sched.Schedule
    stages: tuple[StageWork, ...]
    classes: Classes  # which devices the engine simulates, and what each stands for
    p2p_bytes: float  # activation (or gradient) bytes per micro-batch per TP rank
    grad_bytes: int  # bytes per gradient element in the DP reduction
    optimizer_s: dict[int, float]  # optimizer step time per pipeline rank
    speed: dict[int, float] = field(default_factory=dict)  # compute-time factor per device (what-ifs)
    schedule_params: dict[str, int] = field(default_factory=dict)  # the schedule's parameters in effect (llama3: n)
    # bytes per parameter the distributed optimizer all-gathers, per stage (training.fp8_params:
    # below 2); stages absent: bf16, 2
    gather_bytes: dict[int, float] = field(default_factory=dict)
    # PyTorch async TP: idle-network seconds of one sequence-dim all-gather of a micro-batch's
    # activation, which each split GEMM's shard copies add up to (simtrain.engine.tpalone); 0 otherwise
    tp_gather_s: float = 0.0

    @property
    def num_gpus(self) -> int:
        return self.layout.world

    @property
    def tokens_per_step(self) -> int:
        return self.layout.global_batch * self.scenario.training.seq_len

    @property
    def simulated(self) -> tuple[int, ...]:
        """Global ranks the engine runs as processes: one per class."""
        return self.classes.reps

    @property
    def symmetric(self) -> bool:
        """One representative per pipeline rank (the default without what-ifs)."""
        return self.classes.kind == "pipeline"

    def peer(self, dev: int, stage: int) -> int:
        """The simulated device holding virtual stage `stage` that `dev` exchanges
        activations and gradients with (the representative of its neighbour's class)."""
        return self.classes.peer(dev, self.schedule.placement[stage])

    def copies(self, kind: str, pp: int = 0) -> tuple[int, ...]:
        """Rank offsets of the groups that mirror a pipeline representative's `kind` group
        on pipeline rank `pp`."""
        return self.classes.copies(kind, pp) if self.symmetric else (0,)


def _schedule(s: Scenario, L: Layout) -> sched.Schedule:
    if s.schedule.file:
        p = resolve_path(s.schedule.file, "schedules", "schedule", "schedule.file", near=s.source or None)
        return sched.load_schedule_file(p, L.pp, L.vp, L.microbatches)
    return sched.build(s.schedule.name, L.pp, L.vp, L.microbatches, **schedule_params(s, L))


def schedule_params(s: Scenario, L: Layout) -> dict[str, int]:
    """The schedule's parameters in effect: llama3's n is schedule.n or its default
    (PP when PP divides the micro-batches per replica, else the smallest valid n above)."""
    if s.schedule.file:
        return {}
    if s.schedule.n:
        return {"n": s.schedule.n}
    if s.schedule.name == "llama3":
        return {"n": llama3_default_n(L.pp, L.microbatches)}
    return {}


# Per-rank mode simulates every device: 16,384 GPUs take ~1 minute and 1.4 GB (README, Speed),
# growing about linearly, so 100,000 would take tens of minutes and ~8 GB.
MAX_PER_RANK = 65_536


def make_plan(s: Scenario, schedule: sched.Schedule | None = None) -> Plan:
    """Everything the engine needs for scenario `s`. `schedule` stands in for the
    scenario's own (the search's bound: a one-micro-batch schedule; the scenario's is
    checked for validity but not generated)."""
    L = make_layout(s)
    if s.engine.mode != "symmetric" and L.world > MAX_PER_RANK:  # before building a huge topology
        raise bad("engine.mode", s.engine.mode, f"simulates every one of the {L.world:,} devices, above per-rank's limit of "
                  f"{MAX_PER_RANK:,} (16,384 take ~1 minute and 1.4 GB)",
                  'use engine.mode = "symmetric" (exact for identical replicas) or fewer GPUs')
    topo = load_topology(s.cluster.topology, L.world, s.cluster.device, near=s.source or None,
                         tiers=tier_overrides(s.cluster))
    whatif.check(s, L.world)
    topo = whatif.apply(topo, s.whatif)
    if topo.num_gpus < L.world:
        raise bad("cluster.gpus", L.world, f"topology {topo.name!r} has only {topo.num_gpus} devices", "use fewer GPUs or a larger topology")
    dev = apply_device_table(topo.device, s.device)  # the scenario's [device] changes
    if s.parallel.flash_attention:
        check_attention_kernel(dev.name, FAMILY.get(dev.name, ""), s.parallel.attention_kernel)
    # the software stack's sustained share of the device's kernel throughput, and the pace of
    # the slowest of the job's devices (fleet speed variation; explicit per-device factors
    # from [whatif] random_slowdown_sigma replace it)
    if not 0 <= s.cluster.gpu_speed_sigma < 0.5:
        raise bad("cluster.gpu_speed_sigma", s.cluster.gpu_speed_sigma, "must be in [0, 0.5)",
                  "use e.g. 0.011 (1.1% device-to-device speed variation) or 0 to turn it off")
    slowest = slowest_of(L.world, s.cluster.gpu_speed_sigma) if not s.whatif.random_slowdown_sigma else 1.0
    dev = dataclasses.replace(dev, sustained_fraction=dev.sustained_fraction * s.stack.sustained_fraction / slowest,
                              memory_efficiency=dev.memory_efficiency / slowest)
    FP8.check_fp8(dev, s.training.precision, s.training.fp8_recipe, s.training.fp8_params, bool(s.model.num_experts))
    precision = FP8.workload_precision(s.training.precision, s.training.fp8_recipe)  # "fp8-blockwise", ...
    taken = max(s.stack.tp_overlap_sms, default=0)
    if taken >= dev.sms:  # the GEMM would have no SMs left (simtrain.workload.ops._tp_overlap_sms)
        raise bad("stack.tp_overlap_sms", list(s.stack.tp_overlap_sms), f"takes {taken} SMs from a GEMM but the "
                  f"{dev.name} has {dev.sms}", f"give each GEMM fewer than {dev.sms} SMs taken")
    for key in ("nccl_channels_intra_node", "nccl_channels_inter_node", "ep_overlap_sms"):  # (engine.smload; not TPUs)
        if getattr(s.stack, key) >= dev.sms and dev.family != "tpu":  # compute beside it would have no SM left
            raise bad(f"stack.{key}", getattr(s.stack, key), f"holds every SM of the {dev.name}, which has {dev.sms}",
                      f"use fewer than {dev.sms} (NCCL: 24 within an 8-GPU node, 16 across nodes; DeepEP: 20)")
    m = s.model
    ms = stats(m, s.training.seq_len, s.training.document_length)
    if schedule is None:
        schedule = _schedule(s, L)
    elif not s.schedule.file:
        why = sched.check(s.schedule.name, L.pp, L.vp, L.microbatches, **schedule_params(s, L))
        if why:
            raise SimtrainError(why)
    # each chain of virtual stages is the whole model (DualPipe: two copies, one per direction)
    layers = split_layers(m.num_hidden_layers, schedule.chain_length, s.parallel.first_stage_layers,
                          s.parallel.last_stage_layers, s.parallel.stage_layers) * schedule.chains
    # layer_cost counts attention over `document_length` keys per query when it is below the
    # sequence length: pass the keys a query attends under the document mask and the
    # sliding window together (simtrain.workload.flops.attended_length; a float)
    attended = attended_length(s.training.seq_len, s.training.document_length, m.sliding_window)
    tp_gather = tp_gather_seconds(s, L, topo)
    lc = layer_cost(m, s.parallel, dev, s.training.seq_len, s.stack,
                    attended if attended < s.training.seq_len else s.training.document_length,
                    precision, s.training.grad_precision, tp_gather)
    grad_bytes = grad_element_bytes(s.training.grad_precision)
    per_layer_params = ms.params_per_layer / L.tp
    moe_kw: list[dict] = [{} for _ in layers]
    if s.whatif.expert_imbalance and not m.num_experts:  # a what-if with nothing to act on
        raise bad("whatif.expert_imbalance", s.whatif.expert_imbalance, f"model {m.name or 'custom'} has no experts",
                  "remove the key, or use a mixture-of-experts model (model.num_experts)")
    if m.num_experts:  # ---- mixture of experts: MoE layers, dense first layers, expert weights
        check_imbalance(s.whatif.expert_imbalance, m.num_experts)
        dense_lc, dense_params = lc, ms.dense_params_per_layer / L.tp
        lc, mc = moe_layer_costs(m, s.parallel, dev, s.training.seq_len, s.stack, s.training.document_length,
                                 precision, s.whatif.expert_imbalance)
        experts = expert_params_per_layer(m, s.parallel)
        per_layer_params = (ms.params_per_layer - ms.expert_params_per_layer) / L.tp + experts
        flags = moe_layer_flags(m)  # per layer along a chain: experts or a dense MLP
        for i, n in enumerate(layers):
            start = sum(layers[i - i % schedule.chain_length:i])  # layer index along the chain
            # the stage's dense layers (the engine runs them before its MoE ones: the same
            # work and all-to-alls as in the model's order, slightly different overlap)
            dense_n = n - sum(flags[start:start + n])
            moe_kw[i] = dict(moe=mc, dense=dense_lc, dense_layers=dense_n,
                             expert_params=(n - dense_n) * experts, expert_grad_bytes_per_layer=experts * grad_bytes,
                             dense_grad_bytes_per_layer=dense_params * grad_bytes,
                             _params=(n - dense_n) * per_layer_params + dense_n * dense_params)
    stages = []
    for i, n in enumerate(layers):
        first, last = schedule.is_first(i), schedule.is_last(i)
        emb = embedding_cost(m, s.parallel, dev, s.training.seq_len, s.stack) if first else None
        head = head_cost(m, s.parallel, dev, s.training.seq_len, s.stack) if last else None
        end_params = (ms.embedding_params / L.tp if first else 0.0) + (
            (ms.head_params or ms.embedding_params) / L.tp if last and (ms.head_params or schedule.chain_length > 1) else 0.0
        )
        kw = dict(moe_kw[i])
        if last and m.num_nextn_predict_layers:  # DeepSeek's multi-token prediction modules (costs.mtp_cost)
            d = m.num_nextn_predict_layers
            mtp = mtp_cost(m, s.parallel, dev, s.training.seq_len, lc, head)
            head = EndCost(head.fwd + mtp.fwd, head.bwd_input + mtp.bwd_input, head.bwd_weight + mtp.bwd_weight,
                           head.model_flops)
            # its layer's weights (experts reduced over their edp group) and the 2h x h projection
            end_params += d * (per_layer_params - (experts if m.num_experts else 0.0) + 2 * m.hidden_size ** 2 / L.tp)
            if kw and m.num_experts:
                kw["expert_params"] = kw["expert_params"] + d * experts
                kw["_params"] = kw["_params"] + d * experts
        body = kw.pop("_params", n * per_layer_params)
        dense_grad = (per_layer_params - kw["expert_params"] / max(1, n - kw["dense_layers"])) if kw and n > kw["dense_layers"] else per_layer_params
        stages.append(StageWork(i, n, lc, emb, head, body + end_params,
                                dense_grad * grad_bytes, end_params * grad_bytes, **kw))
    opt: dict[int, float] = {}
    shard = L.dp * L.cp if s.parallel.zero >= 1 else 1
    eshard = L.edp if s.parallel.zero >= 1 else 1
    for r in range(L.pp):
        params = sum(st.params - st.expert_params for st in stages if schedule.placement[st.index] == r)
        experts = sum(st.expert_params for st in stages if schedule.placement[st.index] == r)
        opt[r] = optimizer_time(dev, params / shard + experts / eshard, s.stack)
        held = sum(st.layers for st in stages if schedule.placement[st.index] == r)  # (DeepSpeed v0.3.x ZeRO-3)
        opt[r] += Z3.persistent_gather_seconds(m, s.parallel, s.stack, held)
        if FP8.is_fp8(s.training.precision):  # FP8 weight copies cast once per step
            opt[r] += FP8.weight_cast_seconds(dev, held * FP8.linear_params_per_layer(m) / L.tp, s.training.fp8_recipe)
    p2p = s.parallel.micro_batch * (s.training.seq_len // L.cp) * m.hidden_size * 2 / L.tp
    speed = whatif.device_factors(s.whatif, L.world)
    plan = Plan(s, L, topo, dev, ms, schedule, tuple(stages), symmetry.pipeline(L), float(p2p), grad_bytes, opt,
                speed, schedule_params(s, L), tp_gather_s=tp_gather)
    if s.training.fp8_params:
        recipe = s.training.fp8_recipe
        plan = dataclasses.replace(plan, gather_bytes={st.index: FP8.param_gather_bytes(m, st.params, st.layers, L.tp, True,
                                                                                        recipe) for st in stages})
    return dataclasses.replace(plan, classes=choose_classes(plan))


def choose_classes(plan: Plan) -> Classes:
    """The partition the engine simulates: every device (`engine.mode = "per-rank"`, or
    what-ifs that make every device differ), one per pipeline rank (no what-ifs), or the
    classes the what-ifs leave alike (simtrain.engine.refine). What-if classes do not
    follow expert groups and their all-to-alls yet: with what-ifs, a mixture-of-experts
    model simulates every device (exact, as per-rank mode)."""
    s, L = plan.scenario, plan.layout
    w = s.whatif
    if not (s.engine.mode == "per-rank" or w.compute_jitter > 0 or w.random_slowdown_sigma > 0):
        if not plan.speed and not isinstance(plan.topology, whatif.Degraded):
            return symmetry.pipeline(L)
        if not s.model.num_experts:
            from simtrain.engine.refine import refined

            return refined(plan)
    from simtrain.engine.refine import per_rank_preload

    check_per_rank_memory(plan)
    out = symmetry.per_rank(L)
    per_rank_preload(plan, out)
    return out


# Simulating every device keeps a process, its flows and its timeline records in memory:
# about 3 records of ~200 bytes per action (the engine's coarse detail above 512 devices)
# plus ~40 KB per device (measured: 16,384 devices x 32 actions, 1.3 GB). Runs estimated
# above this are refused with the mode that does them.
PER_RANK_LIMIT_BYTES = 8 * 2**30


def per_rank_bytes(plan: Plan) -> float:
    actions = sum(len(a) for a in plan.schedule.actions.values()) * plan.layout.world // plan.layout.pp
    return actions * 3 * 200.0 + plan.layout.world * 40e3


def check_per_rank_memory(plan: Plan) -> None:
    need = per_rank_bytes(plan)
    if need <= PER_RANK_LIMIT_BYTES:
        return
    s, n = plan.scenario, plan.layout.world
    what = f"about {need / 2**30:.0f} GiB for {n:,} devices, above {PER_RANK_LIMIT_BYTES / 2**30:.0f} GiB"
    if s.engine.mode == "per-rank":
        raise bad("engine.mode", "per-rank", f"simulating every device needs {what}",
                  'use engine.mode = "symmetric" (the default: one device per class of devices that behave alike, '
                  "exact, what-ifs included)")
    if not (s.whatif.compute_jitter > 0 or s.whatif.random_slowdown_sigma > 0):  # an MoE model's what-ifs
        raise bad("model.num_experts", s.model.num_experts, f"with what-ifs a mixture-of-experts model simulates every "
                  f"device: {what}", "simulate fewer devices, or run it without [whatif]")
    field = "whatif.compute_jitter" if s.whatif.compute_jitter > 0 else "whatif.random_slowdown_sigma"
    raise bad(field, getattr(s.whatif, field.split(".")[1]), f"makes every device differ, so all must be simulated: {what}",
              "simulate fewer devices, or name the slow ones (whatif.slow_devices, random_slow_fraction)")


def slowest_of(n: int, sigma: float) -> float:
    """Expected compute-time factor of the slowest of n devices whose speeds vary with
    relative standard deviation sigma: 1 + sigma * E[max of n standard normals], with Blom's
    approximation E[max] = Phi^-1((n - 0.375) / (n + 0.25)) (exact to ~1% for n >= 2; 0 for n = 1)."""
    if sigma <= 0 or n <= 1:
        return 1.0
    return 1.0 + sigma * NormalDist().inv_cdf((n - 0.375) / (n + 0.25))


def check_supported(s: Scenario) -> None:
    if s.parallel.zero not in (0, 1, 2, 3):
        raise bad("parallel.zero", s.parallel.zero, "not a ZeRO stage", "use 0, 1, 2 or 3")
    if s.model.num_experts and s.parallel.cp > 1:
        raise bad("parallel.cp", s.parallel.cp, "context parallelism with mixture-of-experts layers is not modelled",
                  "use cp = 1 (or a longer micro-batch)")
    if s.model.num_experts and s.parallel.zero == 3:
        raise bad("parallel.zero", 3, "FSDP of mixture-of-experts layers is not modelled", "use zero = 1 (Megatron-Core's distributed optimizer)")
