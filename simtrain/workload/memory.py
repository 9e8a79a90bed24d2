"""Device memory of one training step: model states, activations and allowances.

Per pipeline rank (all TP, CP and DP ranks of a pipeline rank hold the same amount), the
peak of
    parameters + gradients + optimizer state            (model states, static)
  + live activations at the schedule's worst moment    (per layer x in-flight micro-batches)
  + transient buffers (one layer re-materialized under full recomputation, ZeRO-3's
    gathered layer, bf16 logits, pipeline send/receive buffers)
  + a fixed allowance (CUDA context, NCCL and cuBLAS workspaces)
  + an allocator-fragmentation allowance (a share of everything allocated above).

Model states, mixed-precision Adam as Megatron-LM runs it (Narayanan et al. 2021;
Megatron-Core distributed-optimizer docs): bf16/fp16 parameters 2 B, fp32 main gradients
4 B, fp32 master weights + Adam m + v 12 B = 18 B per parameter. ZeRO (Rajbhandari et al.
2020) shards over the N = DP x CP ranks that hold replicas of the same parameters:
    zero 0: 2 + 4 + 12           zero 1 (distributed optimizer): 2 + 4 + 12/N
    zero 2: 2 + (4 + 12)/N       zero 3 (FSDP): (2 + 4 + 12)/N
(Megatron-Core shards its distributed optimizer over the data-parallel group *with*
context parallelism, since CP ranks hold identical weights.)

Activations per transformer layer and micro-batch follow Korthikanti et al. 2022,
"Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198), §4:
with s = sequence, b = micro-batch, h = hidden, a = heads, t = TP size, 2-byte activations
and 1-byte dropout masks, a GPT layer stores
    s*b*h*(34 + 5*a*s/h) bytes                     no TP, no recomputation
    s*b*h*(10 + 24/t + 5*a*s/(h*t))                 TP without sequence parallelism
    s*b*h/t*(34 + 5*a*s/h)                          TP + sequence parallelism
    s*b*h/t*34                                      + selective recomputation
    2*s*b*h (/t with sequence parallelism)          full recomputation (layer input only)
`layer_activation_bytes` (simtrain.workload.activations) derives the 34 term by term so that it adapts to SwiGLU, GQA,
models without dropout, FlashAttention and context parallelism (see its comments).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.units import GIB
from simtrain.schedule import live_peak, peak_in_flight
from simtrain.workload import fp8 as FP8
from simtrain.workload import moe as MOE
from simtrain.workload import recompute as R
from simtrain.workload.activations import (  # noqa: F401  (re-exported: the per-layer formulas)
    embedding_activation_bytes, head_activation_bytes, layer_activation_bytes, loss_transient_bytes,
)

PARAM_BYTES = 2.0  # bf16/fp16 weights
GRAD_BYTES = 4.0  # fp32 main gradients (Megatron accumulates into fp32 main_grad buffers)
BF16_GRAD_BYTES = 2.0  # training.grad_precision = "bf16": gradients held and reduced in bf16

OPTIMIZER_BYTES = 12.0  # fp32 master weights (4) + Adam first (4) and second (4) moments
# The stack's optimizer_moments = "bf16" keeps Adam's moments in bf16 (DeepSeek-V3 §3.3.3,
# "Low-Precision Optimizer States"): 4 + 2 + 2 = 8 bytes per parameter; optimizer_master =
# "bf16" the master weights too (Apex's DistributedFusedAdam with dtype=bf16): 2 + 2 + 2 = 6.
MOMENT_BYTES = {"fp32": 4.0, "bf16": 2.0}

# The workspace and fragmentation allowances are the software stack's (simtrain.scenario.stack).


def grad_element_bytes(grad_precision: str) -> int:
    """Bytes per gradient element for `training.grad_precision`."""
    return int(BF16_GRAD_BYTES if grad_precision in ("bf16", "fp16") else GRAD_BYTES)


def model_state_bytes(params: float, zero: int, shards: int,
                      grad_bytes: float = GRAD_BYTES, optimizer_bytes: float = OPTIMIZER_BYTES) -> tuple[float, float, float]:
    """(parameter, gradient, optimizer-state) bytes of `params` parameters on one rank
    under ZeRO stage `zero`, sharded over `shards` data-parallel (x CP) ranks, with
    `grad_bytes` per gradient element (4 fp32, 2 bf16)."""
    if zero not in (0, 1, 2, 3):
        raise SimtrainError(f"parallel.zero = {zero!r}: not a ZeRO stage; use 0, 1, 2 or 3")
    n = max(1, shards)
    p = params * PARAM_BYTES / (n if zero >= 3 else 1)
    g = params * grad_bytes / (n if zero >= 2 else 1)
    o = params * optimizer_bytes / (n if zero >= 1 else 1)
    return p, g, o


@dataclass(frozen=True)
class StageMemory:
    """Peak memory of one device of pipeline rank `rank`, bytes by part."""

    rank: int
    layers: int  # transformer layers held (all chunks)
    params: float  # parameters held (this TP rank, unsharded count)
    peak_in_flight: int  # most (chunk, micro-batch) activations live at once
    parameters: float
    gradients: float
    optimizer: float
    activations: float  # transformer layers' saved activations at the peak
    end_activations: float  # embedding / output layer / fp32 logits at the peak
    transient: float  # re-materialized layer, gathered ZeRO-3 layer, bf16 logits, P2P buffers
    workspace: float  # CUDA context, NCCL, cuBLAS (fixed allowance)
    fragmentation: float  # allocator allowance

    @property
    def total(self) -> float:
        return (self.parameters + self.gradients + self.optimizer + self.activations
                + self.end_activations + self.transient + self.workspace + self.fragmentation)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["total"] = self.total
        out["total_gib"] = self.total / GIB
        return out


@dataclass(frozen=True)
class MemoryReport:
    per_stage: tuple[StageMemory, ...]
    capacity_bytes: float
    device: str
    assumptions: str

    @property
    def peak_bytes(self) -> float:
        return max(s.total for s in self.per_stage)

    @property
    def peak_memory_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def capacity_gib(self) -> float:
        return self.capacity_bytes / GIB

    @property
    def fits_in_memory(self) -> bool:
        return self.peak_bytes <= self.capacity_bytes

    @property
    def peak_stage(self) -> int:
        return max(self.per_stage, key=lambda s: s.total).rank

    @property
    def allowance_gib(self) -> float:
        """The peak rank's workspace + fragmentation allowance (assumed, not tensors)."""
        st = max(self.per_stage, key=lambda s: s.total)
        return (st.workspace + st.fragmentation) / GIB

    def to_json(self) -> dict[str, Any]:
        return {
            "fits_in_memory": self.fits_in_memory,
            "peak_memory_gib": self.peak_memory_gib,
            "capacity_gib": self.capacity_gib,
            "peak_stage": self.peak_stage,
            "allowance_gib": self.allowance_gib,
            "device": self.device,
            "assumptions": self.assumptions,
            "per_stage": [s.to_json() for s in self.per_stage],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def kernel_activation_kwargs(stack: Any, par: Any) -> dict[str, Any]:
    """What the stack's kernels and the recomputed modules change in `layer_activation_bytes`."""
    return dict(unfused_norm=stack.norm == "unfused", unfused_activation=stack.activation == "unfused",
                norm_saves_output=stack.norm_saves == "output", recompute_modules=par.recompute_modules)


def estimate(plan: Any) -> MemoryReport:
    """Per-pipeline-rank peak memory of `plan` (a simtrain.engine.plan.Plan) against its device."""
    s = plan.scenario
    par, m = s.parallel, s.model
    L = plan.layout
    sched = plan.schedule
    seq = s.training.seq_len
    flash = bool(getattr(par, "flash_attention", True))
    sp = par.sequence_parallel and L.tp > 1
    stack = s.stack
    unfused = kernel_activation_kwargs(stack, par)
    per_layer = layer_activation_bytes(m, seq, L.micro_batch, L.tp, par.sequence_parallel, par.recompute, flash, L.cp,
                                       **unfused)
    fp8 = FP8.is_fp8(s.training.precision)
    w8 = FP8.weight_bytes(plan.device, s.training.fp8_recipe)  # resident bytes per FP8 linear weight
    if fp8:  # Transformer Engine keeps the linears' inputs in FP8 (simtrain.workload.fp8)
        per_layer -= FP8.activation_saving_bytes(m, seq, L.micro_batch, L.tp, par.sequence_parallel, par.recompute, L.cp,
                                                 R.selected(par))
    full_layer = layer_activation_bytes(m, seq, L.micro_batch, L.tp, par.sequence_parallel, "none", flash, L.cp,
                                        **unfused)
    workspace, fragmentation = stack.workspace_gib * GIB, stack.fragmentation
    emb = embedding_activation_bytes(m, seq, L.micro_batch, L.tp, par.sequence_parallel, L.cp)
    head = head_activation_bytes(m, seq, L.micro_batch, L.tp, par.sequence_parallel, L.cp, stack.loss_logit_bytes)
    layer_size = {st.index: st.layers * per_layer for st in plan.stages}
    moe_buffers = 0.0
    if m.num_experts:  # ---- MoE layers: attention as dense, the MoE block (simtrain.workload.moe)
        import dataclasses

        imb = s.whatif.expert_imbalance
        attn_only = layer_activation_bytes(dataclasses.replace(m, intermediate_size=0), seq, L.micro_batch, L.tp,
                                           par.sequence_parallel, par.recompute, flash, L.cp, **unfused)
        if fp8:
            attn_only -= FP8.activation_saving_bytes(dataclasses.replace(m, intermediate_size=0), seq, L.micro_batch,
                                                     L.tp, par.sequence_parallel, par.recompute, L.cp, R.selected(par))
        moe_layer = attn_only + MOE.moe_activation_bytes(m, par, seq, imb, par.recompute, fp8, stack.fp8_moe_act_input)
        layer_size = {st.index: st.dense_layers * per_layer + (st.layers - st.dense_layers) * moe_layer
                      for st in plan.stages}
        moe_buffers = MOE.dispatch_buffer_bytes(m, par, seq, imb)
    if m.num_nextn_predict_layers:  # multi-token prediction on the last stage: its layer, its input and head again
        mtp_layer = moe_layer if m.num_experts else per_layer
        head += m.num_nextn_predict_layers * (mtp_layer + head + L.micro_batch * seq / L.cp * 4 * m.hidden_size)
    end_size = {st.index: (emb if sched.is_first(st.index) else 0.0) + (head if sched.is_last(st.index) else 0.0)
                for st in plan.stages}
    counts = peak_in_flight(sched)
    opt_bytes = MOMENT_BYTES[stack.optimizer_master] + 2 * MOMENT_BYTES[stack.optimizer_moments]  # master + m + v
    shards = L.dp * L.cp
    params_per_layer = plan.model.params_per_layer / L.tp
    tokens = L.micro_batch * seq / L.cp
    out = []
    for r in range(L.pp):
        mine = [st for st in plan.stages if sched.placement[st.index] == r]
        params = sum(st.params for st in mine)
        experts = sum(st.expert_params for st in mine)  # sharded over the edp group, not DP x CP
        p, g, o = model_state_bytes(params - experts, par.zero, shards, plan.grad_bytes, opt_bytes)
        if experts:
            pe, ge, oe = model_state_bytes(experts, par.zero, L.edp, plan.grad_bytes, opt_bytes)
            p, g, o = p + pe, g + ge, o + oe
        if fp8 and m.num_experts:  # the FP8 copies of every layer weight (norms are negligible)
            p += w8 * sum(st.params - (st.end_grad_bytes / plan.grad_bytes) for st in mine)
        elif fp8:  # the FP8 weights and their transposes, resident beside the bf16 ones
            lin = sum(st.layers for st in mine) * FP8.linear_params_per_layer(m) / L.tp
            p += w8 * lin
            if s.training.fp8_params:  # ... or instead of them (training.fp8_params)
                p -= PARAM_BYTES * lin / (shards if par.zero >= 3 else 1)
        # Peak of the summed live bytes (layers + ends together: they are born and freed
        # with the same actions), then split in proportion for the report.
        both = live_peak(sched, r, lambda k: layer_size[k] + end_size[k])
        layer_peak = live_peak(sched, r, layer_size.__getitem__)
        act, ends = (layer_peak, both - layer_peak)
        transient = 2 * plan.p2p_bytes  # one activation and one gradient receive buffer
        if any(st.moe is not None and st.layers > st.dense_layers for st in mine):
            transient += moe_buffers  # the dispatch's send and receive buffers
        if par.recompute == "full":
            transient += full_layer  # the layer being re-materialized for its backward
        if par.zero >= 3:
            # FSDP all-gathers a layer's bf16 weights (current + prefetched next) and holds
            # its unsharded gradient (training.grad_precision) until the reduce-scatter.
            transient += params_per_layer * (2 * PARAM_BYTES + plan.grad_bytes)
        if any(sched.is_last(st.index) for st in mine):
            transient += loss_transient_bytes(m, tokens, L.tp, stack.loss_logit_bytes)  # the loss's own buffers
        allocated = p + g + o + act + ends + transient
        out.append(StageMemory(
            rank=r, layers=sum(st.layers for st in mine), params=params, peak_in_flight=counts.get(r, 0),
            parameters=p, gradients=g, optimizer=o, activations=act, end_activations=ends,
            transient=transient, workspace=workspace, fragmentation=fragmentation * allocated,
        ))
    assumptions = (
        ((f"FP8 (Transformer Engine): linear weights in FP8 only (fp8_params), {w8:g} B "
          "with their transposes on Hopper (MXFP8: both scalings), linear inputs saved in FP8; " if s.training.fp8_params else
          f"FP8 (Transformer Engine): +{w8:g} B per linear weight (its transpose on Hopper; MXFP8: both scalings), "
          "linear inputs saved in FP8; ") if fp8 else "")
        + (f"experts' states sharded over EP x EDP = {L.ep} x {L.edp}; " if m.num_experts else "")
        + f"mixed-precision Adam 2+{plan.grad_bytes}+{opt_bytes:g} B/param"
        + (" (bf16 moments)" if stack.optimizer_moments == "bf16" else "")
        + (" (bf16 master weights)" if stack.optimizer_master == "bf16" else "")
        + f", ZeRO-{par.zero} over DP*CP = {shards}; activations per "
        f"Korthikanti et al. 2022 ({'FlashAttention' if flash else 'materialized scores'}, recompute "
        f"{par.recompute}" + (f" [{', '.join(sorted(R.selected(par)))}]" if R.selected(par) else "")
        + f", SP {'on' if sp else 'off'}); stack {stack.name}: {stack.workspace_gib:g} GiB workspace + "
        f"{100 * stack.fragmentation:g}% fragmentation"
    )
    return MemoryReport(tuple(out), float(plan.device.memory_bytes), plan.device.name, assumptions)
