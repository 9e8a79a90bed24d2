"""Scenario -> Plan: everything the engine needs, computed once, as plain data.

The plan holds the layout, the topology, the schedule (per-rank action lists), the work
of every virtual stage (layers, per-layer costs, embedding/output layer), the bytes of
every transfer, and which devices the engine simulates: in symmetric mode one
representative per pipeline rank (data-parallel replica 0, CP rank 0, TP rank 0) whose
collectives carry the traffic of every identical group; in per-rank mode every device.
"""

from __future__ import annotations

import dataclasses
from statistics import NormalDist

from dataclasses import dataclass, field

from simtrain import schedule as sched
from simtrain.schedule.constraints import llama3_default_n
from simtrain.engine import whatif
from simtrain.hardware.devices import FAMILY, Device, apply_device_table
from simtrain.hardware.load import load_topology
from simtrain.hardware.topology import Topology
from simtrain.scenario.config import Scenario, tier_overrides
from simtrain.scenario.errors import bad
from simtrain.scenario.files import resolve_path
from simtrain.scenario.layout import Coord, Layout, make_layout, split_layers
from simtrain.workload.kernels import check_attention_kernel
from simtrain.workload.costs import EndCost, LayerCost, embedding_cost, head_cost, layer_cost, optimizer_time
from simtrain.workload.flops import ModelStats, attended_length, stats
from simtrain.workload.moe import MoECost, check_imbalance, expert_params_per_layer, moe_layer_costs
from simtrain.workload import fp8 as FP8
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
    simulated: tuple[int, ...]  # global ranks the engine runs as processes
    symmetric: bool
    p2p_bytes: float  # activation (or gradient) bytes per micro-batch per TP rank
    grad_bytes: int  # bytes per gradient element in the DP reduction
    optimizer_s: dict[int, float]  # optimizer step time per pipeline rank
    speed: dict[int, float] = field(default_factory=dict)  # compute-time factor per device (what-ifs)
    schedule_params: dict[str, int] = field(default_factory=dict)  # the schedule's parameters in effect (llama3: n)
    _copies: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_gpus(self) -> int:
        return self.layout.world

    @property
    def tokens_per_step(self) -> int:
        return self.layout.global_batch * self.scenario.training.seq_len

    def peer(self, dev: int, stage: int) -> int:
        """The device holding virtual stage `stage` that `dev` exchanges activations and
        gradients with (the engine's pipeline neighbour; in symmetric mode that stage's
        representative)."""
        L = self.layout
        rank = self.schedule.placement[stage]
        if self.symmetric:
            return L.rank(Coord(0, rank, 0, 0))
        c = L.coord(dev)
        return L.rank(Coord(c.dp, rank, c.cp, c.tp))

    def copies(self, kind: str, pp: int) -> tuple[int, ...]:
        """Rank offsets of the groups that mirror the representative's `kind` group."""
        key = (kind, pp)
        hit = self._copies.get(key)
        if hit is None:
            hit = self._copies[key] = self._make_copies(kind, pp)
        return hit

    def _make_copies(self, kind: str, pp: int) -> tuple[int, ...]:
        L = self.layout
        if not self.symmetric:
            return (0,)
        base = L.rank(Coord(0, pp, 0, 0))
        if kind == "tp":
            return tuple(L.rank(Coord(d, pp, c, 0)) - base for d in range(L.dp) for c in range(L.cp))
        if kind == "dp":
            return tuple(L.rank(Coord(0, pp, c, t)) - base for c in range(L.cp) for t in range(L.tp))
        if kind == "dpcp":
            return tuple(L.rank(Coord(0, pp, 0, t)) - base for t in range(L.tp))
        if kind == "cp":
            return tuple(L.rank(Coord(d, pp, 0, t)) - base for d in range(L.dp) for t in range(L.tp))
        if kind == "pp":
            return tuple(L.rank(Coord(d, pp, c, t)) - base for d in range(L.dp) for c in range(L.cp) for t in range(L.tp))
        if kind in ("ep", "edp"):  # every group of the stage, as a translation of the representative's
            mine = L.group(kind, base)
            seen, out = set(), []
            for r in (L.rank(Coord(d, pp, c, t)) for d in range(L.dp) for c in range(L.cp) for t in range(L.tp)):
                if r in seen:
                    continue
                g = L.group(kind, r)
                seen.update(g)
                offs = {b - a for a, b in zip(mine, g)}
                if len(offs) != 1:
                    raise bad("parallel.ep", L.ep, "makes expert groups that are not translations of one another "
                              "(symmetric mode needs them)", 'set engine.mode = "per-rank" or an ep aligned with tp*cp')
                out.append(offs.pop())
            return tuple(out)
        raise ValueError(kind)


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


# Per-rank mode simulates every device: 16,384 GPUs take ~100 s and 1.3 GB (README, Speed),
# growing about linearly, so 100,000 would take tens of minutes and ~8 GB.
MAX_PER_RANK = 65_536


def make_plan(s: Scenario) -> Plan:
    L = make_layout(s)
    if s.engine.mode != "symmetric" and L.world > MAX_PER_RANK:  # before building a huge topology
        raise bad("engine.mode", s.engine.mode, f"simulates every one of the {L.world:,} devices, above per-rank's limit of "
                  f"{MAX_PER_RANK:,} (16,384 take ~100 s and 1.3 GB)",
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
    FP8.check_fp8(dev, s.training.precision)
    m = s.model
    ms = stats(m, s.training.seq_len, s.training.document_length)
    S = L.pp * L.vp
    schedule = _schedule(s, L)
    # each chain of virtual stages is the whole model (DualPipe: two copies, one per direction)
    layers = split_layers(m.num_hidden_layers, schedule.chain_length, s.parallel.first_stage_layers,
                          s.parallel.last_stage_layers) * schedule.chains
    # layer_cost counts attention over `document_length` keys per query when it is below the
    # sequence length: pass the keys a query attends under the document mask and the
    # sliding window together (simtrain.workload.flops.attended_length; a float)
    attended = attended_length(s.training.seq_len, s.training.document_length, m.sliding_window)
    lc = layer_cost(m, s.parallel, dev, s.training.seq_len, s.stack,
                    attended if attended < s.training.seq_len else s.training.document_length,
                    s.training.precision)
    grad_bytes = grad_element_bytes(s.training.grad_precision)
    per_layer_params = ms.params_per_layer / L.tp
    moe_kw: list[dict] = [{} for _ in layers]
    if m.num_experts:  # ---- mixture of experts: MoE layers, dense first layers, expert weights
        check_imbalance(s.whatif.expert_imbalance, m.num_experts)
        dense_lc, dense_params = lc, ms.dense_params_per_layer / L.tp
        lc, mc = moe_layer_costs(m, s.parallel, dev, s.training.seq_len, s.stack, s.training.document_length,
                                 s.training.precision, s.whatif.expert_imbalance)
        experts = expert_params_per_layer(m, s.parallel)
        per_layer_params = (ms.params_per_layer - ms.expert_params_per_layer) / L.tp + experts
        for i, n in enumerate(layers):
            start = sum(layers[i - i % schedule.chain_length:i])  # layer index along the chain
            dense_n = max(0, min(n, m.first_k_dense_replace - start))
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
        if FP8.is_fp8(s.training.precision):  # FP8 weight copies cast once per step
            held = sum(st.layers for st in stages if schedule.placement[st.index] == r)
            opt[r] += FP8.weight_cast_seconds(dev, held * FP8.linear_params_per_layer(m) / L.tp)
    symmetric = s.engine.mode == "symmetric"
    if symmetric:
        simulated = tuple(L.rank(Coord(0, r, 0, 0)) for r in range(L.pp))
    else:
        simulated = tuple(range(L.world))
    p2p = s.parallel.micro_batch * (s.training.seq_len // L.cp) * m.hidden_size * 2 / L.tp
    return Plan(s, L, topo, dev, ms, schedule, tuple(stages), simulated, symmetric, float(p2p), grad_bytes, opt,
                whatif.device_factors(s.whatif, L.world), schedule_params(s, L))


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
