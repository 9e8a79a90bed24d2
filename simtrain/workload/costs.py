"""Per-layer work of one micro-batch on one tensor-parallel rank, summed from the kernels
of simtrain.workload.ops: compute durations of the engine's segments, tensor- and context-
parallel collective sizes, model and hardware FLOPs.

A layer's forward is two compute segments, each followed by a TP collective:
    [norm, QKV, rotary, attention, O-proj] -> all-reduce (or reduce-scatter; all-gather before)
    [norm, MLP up, activation, MLP down] -> all-reduce (or reduce-scatter; all-gather before)
with buffer b*s*h*2 bytes (bf16 activations of the micro-batch's local tokens). The
backward mirrors it. Sequence parallelism replaces each all-reduce by a reduce-scatter
plus an all-gather of the same buffer (same ring bytes) and shards norms and residuals.

Launch-bound passes: the host issues each kernel in `stack.launch_us` (eager PyTorch ~7 us);
when a layer's pass has less GPU work than that, the GPU waits for the host and the pass
takes kernels x launch time instead (small models, small micro-batches). FSDP's per-unit
hooks (`stack.fsdp_unit_us`) add host time to each pass of a layer under ZeRO-3.
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.hardware.devices import Device
from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.models import ModelConfig, attention_linears, qk_head_dim, v_head_dim
from simtrain.scenario.stack import Stack
from simtrain.workload import ops as O
from simtrain.workload import recompute as R
from simtrain.workload import zero3 as Z3
from simtrain.workload.compute import gemm_flops, gemm_time
from simtrain.workload.kernels import GRAD_PASSES, OPTIMIZER_BYTES, OPTIMIZER_KERNELS, UNMEASURED_OVERHEAD
from simtrain.workload.compute import memory_time

BF16 = 2


@dataclass(frozen=True)
class LayerCost:
    fwd: tuple[float, float]  # compute seconds of the two forward segments
    bwd_input: tuple[float, float]  # input-gradient compute of the two backward segments
    bwd_weight: float  # weight-gradient compute (separate W action in zero-bubble schedules)
    recompute: float  # extra forward work before the backward (recompute = full/selective)
    tp_bytes: float  # buffer of each TP collective (0 when tp == 1)
    model_flops: float  # fwd+bwd model FLOPs of this layer for this micro-batch on this rank
    recompute_flops: float  # extra FLOPs executed because of recomputation
    cp_bytes: float = 0.0  # K/V buffer all-gathered over the CP group per layer (full sequence)
    attn_fwd: float = 0.0  # attention-core compute inside fwd[0] (what ring CP can hide behind)
    attn_bwd: float = 0.0  # attention-core compute inside bwd_input[0]
    launch_factor: tuple[float, float] = (1.0, 1.0)  # forward, backward: >1 when host-bound
    host_wait: float = 0.0  # of fwd + bwd + recompute, seconds the GPU waits for the host ("host" ops)
    # bwd_weight by block (attention, MLP): (seconds before the block's input-gradient TP
    # collective, seconds that can run beside it); None: half per block, all beside
    wgrad_blocks: tuple[tuple[float, float], tuple[float, float]] | None = None

    def wgrad_parts(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Weight-gradient seconds of the attention and MLP blocks as (serial, beside): the
        serial part runs with the block's input-gradient GEMMs, the rest may overlap the TP
        collective that ends the block's backward (engine.async_tp_backward)."""
        if self.wgrad_blocks is None:
            return (0.0, self.bwd_weight / 2), (0.0, self.bwd_weight / 2)
        return self.wgrad_blocks


@dataclass(frozen=True)
class EndCost:
    """Embedding (first stage) or output layer + loss (last stage)."""

    fwd: float
    bwd_input: float
    bwd_weight: float
    model_flops: float


# op kinds that are not GPU kernels a host-bound launch rate stretches: host time the device
# waits for, and waits on copies the kernels cannot hide (simtrain.workload.ops)
UNSCALED = ("host", "comm")


def _launch_factor(ops: tuple[O.Op, ...], phases: tuple[str, ...], stack: Stack, extra_host_s: float = 0.0) -> float:
    gpu = sum(o.seconds for o in ops if o.phase in phases and o.kind not in UNSCALED)
    host = sum(o.kernels for o in ops if o.phase in phases) * stack.launch_us * 1e-6 + extra_host_s
    return max(1.0, host / gpu) if gpu > 0 else 1.0


def layer_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, stack: Stack | None = None,
               document_length: int = 0, precision: str = "bf16", grad_precision: str = "fp32",
               tp_gather_s: float = 0.0) -> LayerCost:
    stack = stack or Stack()
    ops = O.layer_ops(model, par, dev, stack, seq_len, document_length, precision, grad_precision, tp_gather_s)
    hooks = stack.fsdp_unit_us * 1e-6 if par.zero == 3 else 0.0
    kf = _launch_factor(ops, ("fwd",), stack, hooks)
    kb = _launch_factor(ops, ("bwd", "wgrad"), stack, hooks)
    # GPU work scaled when the host's launches bound it; "host" ops (time the GPU waits for
    # the host with the device drained, simtrain.workload.zero3) add on top
    gpu = tuple(o for o in ops if o.kind not in UNSCALED)
    # (with synchronized ZeRO-3 fetches the engine charges the list collectives' host time
    # around each call: simtrain.engine.zero3sync); waits on copies ("comm") add unscaled too
    host = () if Z3.sync(par, stack) else tuple(o for o in ops if o.kind == "host")
    comm = tuple(o for o in ops if o.kind == "comm")
    fwd = tuple(kf * O.seconds(gpu, "fwd", i) + O.seconds(host, "fwd", i) + O.seconds(comm, "fwd", i) for i in (0, 1))
    bwd = tuple(kb * O.seconds(gpu, "bwd", i) + O.seconds(host, "bwd", i) + O.seconds(comm, "bwd", i) for i in (0, 1))
    wgrad = kb * O.seconds(ops, "wgrad")
    wgrad_blocks = _wgrad_blocks(ops, model, kb)
    att_f = kf * sum(o.seconds for o in ops if o.kind == "attention" and o.phase == "fwd")
    att_b = kb * sum(o.seconds for o in ops if o.kind == "attention" and o.phase == "bwd")

    tp, cp, b, h, hd = par.tp, par.cp, par.micro_batch, model.hidden_size, model.head_dim
    t = b * (seq_len // cp)
    heads = model.num_attention_heads // tp
    kv_heads = max(1, model.num_key_value_heads // tp)
    # model FLOPs, PaLM convention (fwd + 2x bwd of every matmul, attention without causal
    # halving): the layer GEMMs and QK^T + AV over the attended keys
    layer_gemms = {name for name, *_ in attention_linears(model)} | {"mlp up", "mlp down"}
    gemm_f = sum(o.flops for o in ops if o.kind == "gemm" and o.phase == "fwd" and o.name in layer_gemms)
    attended = document_length if 0 < document_length < seq_len else seq_len
    att_full = 2.0 * t * attended * (qk_head_dim(model) + v_head_dim(model)) * heads  # 4 t T hd heads when d_qk = d_v
    model_flops = 3 * gemm_f + 3 * att_full
    if par.recompute == "full":
        # the whole forward again, after the backward's own all-gather: FSDP's copy-out is
        # not repeated
        recompute = fwd[0] + fwd[1] - kf * sum(o.seconds for o in ops if o.phase == "fwd" and o.name in NOT_RERUN)
        recompute_flops = gemm_f + att_full
    elif par.recompute == "selective":
        # Korthikanti et al. 2022: recompute only the attention core (QK^T, softmax, AV);
        # FlashAttention recomputes its scores anyway, so there is nothing left to do.
        # Megatron-Core's recompute_modules add norms, MLA up-projections, the dense MLP
        # (simtrain.workload.recompute)
        redo = R.forward_ops(ops, R.selected(par), par.flash_attention)
        recompute = kf * sum(o.seconds for o in redo)
        recompute_flops = float(sum(o.flops for o in redo))
    elif par.recompute == "op-selective":
        recompute, recompute_flops = _op_selective(ops, model, kf)
        if tp > 1 and par.sequence_parallel and tp_gather_s > 0:
            recompute += _op_selective_gather_waits(ops, model, tp, tp_gather_s)
    else:
        recompute, recompute_flops = 0.0, 0.0
    tp_bytes = float(t * h * BF16) if tp > 1 else 0.0
    # Context parallelism as Llama 3 did it (§3.3.2): each CP rank holds 2 chunks of s/(2cp)
    # tokens (causal load balance) and all-gathers K and V of the whole sequence before
    # attention: 2 (K, V) * b * s * kv_heads_local * head_dim * 2 bytes; the backward
    # reduce-scatters dK, dV of the same size. GQA keeps this small (8 KV heads of 128).
    # (MLA: each head's up-projected key of d_qk and value of d_v)
    cp_bytes = float(b * seq_len * kv_heads * (qk_head_dim(model) + v_head_dim(model)) * BF16) if cp > 1 else 0.0
    host_wait = O.seconds(host, "fwd") + O.seconds(host, "bwd") + (O.seconds(host, "fwd") if par.recompute == "full" else 0.0)
    if Z3.sync(par, stack) and Z3.applies(par, stack):  # the gathers' host loops (the reduce-scatters' run beside the backward)
        calls = Z3.calls_per_segment(model, par, stack)
        g = sum(Z3.gather_host_seconds(par, stack))
        fg = sum(calls[("fwd", i)][0] for i in (0, 1))
        host_wait = g * (fg * (2 if par.recompute == "full" else 1) + sum(calls[("bwd", i)][0] for i in (0, 1)))
    return LayerCost(fwd, bwd, wgrad, recompute, tp_bytes, model_flops, recompute_flops, cp_bytes, att_f, att_b,
                     (kf, kb), host_wait, wgrad_blocks)


def beside_linears(model: ModelConfig) -> set[str]:
    """The linears whose weight gradient can run beside a block's input-gradient TP
    collective: those that read the block's (normed) input, whose input gradient is the
    last GEMM of the block's backward. Megatron-LM's column-parallel linear
    (LinearWithGradAccumulationAndAsyncCommunication.backward, megatron/core/
    tensor_parallel/layers.py) launches the all-reduce (reduce-scatter with sequence
    parallelism) of its input gradient with async_op=True, then computes its weight
    gradient while it runs, then waits. The other linears (row-parallel out proj and mlp down, MLA's up projections) have their
    weight gradient computed with their input gradient, before the collective: autograd
    runs a linear's two gradients together. Llama 3 405B: QKV 9.5%, MLP up 54.7%, so
    35.8% of the weight gradient cannot overlap a TP collective."""
    h = model.hidden_size
    attn = attention_linears(model)
    return {name for name, width_in, _, _ in attn[:-1] if width_in == h} | {"mlp up"}


def _wgrad_blocks(ops: tuple[O.Op, ...], model: ModelConfig, kb: float) -> tuple[tuple[float, float], tuple[float, float]]:
    first = beside_linears(model)
    out = []
    for seg in (0, 1):
        total = kb * O.seconds(ops, "wgrad", seg)
        beside = kb * sum(o.seconds for o in ops if o.phase == "wgrad" and o.segment == seg and o.name in first)
        out.append((total - beside, beside))
    return out[0], out[1]


def op_selective_gemm_shares(model: ModelConfig) -> dict[str, float]:
    """torchtitan's op-level selective activation checkpointing (torchtitan/models/llama3/
    infra/parallelize.py, `_custom_policy`): inside each checkpointed block, "saves output of
    all compute ops, except every second mm" (mm and SDPA outputs are saved; every other op
    is recomputed). A Llama block runs its matmuls in the order wq, wk, wv, wo, w1, w3, w2,
    so the 2nd, 4th and 6th are recomputed: wk, wo and w3 (plain MLP: w1, w2 are the 5th and
    6th, so w2); multi-head latent attention runs q_a, q_b, kv_a, kv_b, wo first. Returned:
    the share of each simtrain GEMM that is recomputed ("qkv" fuses wq, wk, wv: wk's share
    is kv / (q + 2 kv); "mlp up" fuses w1 and w3: half each)."""
    q = model.num_attention_heads * model.head_dim
    kv = model.num_key_value_heads * model.head_dim
    names = [n for n, *_ in attention_linears(model)]
    mms = ([("qkv", q / (q + 2 * kv)), ("qkv", kv / (q + 2 * kv)), ("qkv", kv / (q + 2 * kv))] if names[0] == "qkv"
           else [(n, 1.0) for n in names[:-1]]) + [("out proj", 1.0)]
    mms += [("mlp up", 0.5), ("mlp up", 0.5)] if model.mlp == "gated" else [("mlp up", 1.0)]
    mms.append(("mlp down", 1.0))
    shares: dict[str, float] = {}
    for name, share in mms[1::2]:  # every second matmul is recomputed
        shares[name] = shares.get(name, 0.0) + share
    return shares


# forward kernels recomputation never runs again: FSDP's copy-out belongs to the all-gather,
# which the backward does anyway
NOT_RERUN = {"fsdp copy-out"}
# forward kernels op-level selective recomputation runs at this share: of DTensor's two
# sequence-dim copies per block, the all-gather's (its output feeds the GEMMs whose outputs
# are not all saved) is rerun with the all-gather; the reduce-scatter's output is saved
# (torchtitan _save_list holds reduce_scatter_tensor), so its input copy is not rerun
OP_SELECTIVE_SHARE = {"tp cat copy": 0.5, "tp chunk sum": 0.0}  # the reduce-scatter output is saved


def _op_selective(ops: tuple[O.Op, ...], model: ModelConfig, kf: float) -> tuple[float, float]:
    """Recompute time and FLOPs of op-level selective checkpointing: the recomputed GEMM
    shares (op_selective_gemm_shares) and every memory-bound forward op (norms, rotary,
    activation, residual adds); attention (SDPA) is saved, so it is not run again."""
    shares = op_selective_gemm_shares(model)
    t = sum(o.seconds * shares.get(o.name, 0.0) for o in ops if o.phase == "fwd" and o.kind == "gemm")
    t += sum(o.seconds * OP_SELECTIVE_SHARE.get(o.name, 1.0) for o in ops
             if o.phase == "fwd" and o.kind == "memory" and o.name not in NOT_RERUN)
    flops = sum(o.flops * shares.get(o.name, 0.0) for o in ops if o.phase == "fwd" and o.kind == "gemm")
    return kf * t, flops


def _op_selective_gather_waits(ops: tuple[O.Op, ...], model: ModelConfig, tp: int, gather_s: float) -> float:
    """Op-level selective checkpointing saves no all-gather output (torchtitan's _save_list:
    mm, SDPA, reduce_scatter_tensor, max), so the backward gathers each block's input again.
    With overlapped (async) TP that all-gather is pipelined with the GEMMs that read it and
    are recomputed (PyTorch's fused_all_gather_matmul takes the matmuls whose left operand
    is the gathered input; the weight gradients read it transposed and use the returned
    copy): attention's recomputed share of its input linears (wk of wq, wk, wv), the MLP's
    of mlp up (w3 of w1, w3). What the share of G seconds cannot hide, as the forward's
    pipelined overlap (ops._tp_overlap_waits): max(0, C - G (TP-1)/TP) per block."""
    shares = op_selective_gemm_shares(model)
    first = beside_linears(model)
    g = {o.name: o.seconds for o in ops if o.kind == "gemm" and o.phase == "fwd"}
    attn = sum(g.get(n, 0.0) * shares.get(n, 0.0) for n in first if n != "mlp up")
    mlp = g.get("mlp up", 0.0) * shares.get("mlp up", 0.0)
    return sum(O.pipelined_wait(gather_s, x, tp) for x in (attn, mlp))


def _end(ops: tuple[O.Op, ...], stack: Stack, model_flops: float) -> EndCost:
    kf = _launch_factor(ops, ("fwd",), stack)
    kb = _launch_factor(ops, ("bwd", "wgrad"), stack)
    return EndCost(kf * O.seconds(ops, "fwd"), kb * O.seconds(ops, "bwd"), kb * O.seconds(ops, "wgrad"), model_flops)


def embedding_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, stack: Stack | None = None) -> EndCost:
    ops = O.embed_ops(model, par, dev, seq_len)
    # the lookup's gradient is a scatter-add, counted in the weight-gradient phase
    e = _end(ops, stack or Stack(), 0.0)
    return EndCost(e.fwd, 0.0, e.bwd_input + e.bwd_weight, 0.0)


def head_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, stack: Stack | None = None) -> EndCost:
    """Final norm, output projection (vocab-parallel over TP) and cross-entropy."""
    t = par.micro_batch * seq_len // par.cp
    ops = O.head_ops(model, par, dev, stack or Stack(), seq_len)
    return _end(ops, stack or Stack(), 3 * gemm_flops(t, model.vocab_size // par.tp, model.hidden_size))


def mtp_cost(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, layer: LayerCost,
             head: EndCost) -> EndCost:
    """Multi-token prediction modules on the last stage (DeepSeek-V3 §2.2, Figure 3), each:
    the projection M of [RMSNorm(h_prev); RMSNorm(embedding)] (2h -> h, a GEMM), one
    transformer layer (`layer`, as the model's last layers) and the shared output head and
    cross-entropy again (`head`). Compute only: its expert all-to-alls are not simulated, and
    its FLOPs are not model FLOPs (DeepSeek's active parameters exclude the module)."""
    d = model.num_nextn_predict_layers
    t = par.micro_batch * seq_len // par.cp
    h = model.hidden_size
    proj = (gemm_time(dev, t, h // par.tp, 2 * h), gemm_time(dev, t, 2 * h, h // par.tp), gemm_time(dev, 2 * h, h // par.tp, t))
    return EndCost(d * (sum(layer.fwd) + proj[0] + head.fwd),
                   d * (sum(layer.bwd_input) + layer.recompute + proj[1] + head.bwd_input),
                   d * (layer.bwd_weight + proj[2] + head.bwd_weight), 0.0)


def optimizer_time(dev: Device, params_on_rank: float, stack: Stack | None = None) -> float:
    """Mixed-precision AdamW step over the parameters this rank updates, memory-bound:
    effective bytes per parameter of the stack's optimizer implementation (fused or
    foreach, measured: simtrain.workload.kernels) with the gradient-norm pass, the master
    -> bf16 parameter copy and zeroing the gradients."""
    kind = (stack or Stack()).optimizer
    return memory_time(dev, OPTIMIZER_BYTES[kind] * params_on_rank, OPTIMIZER_KERNELS[kind])



def grad_pass_bytes(passes: tuple[str, ...], grad_bytes: int) -> float:
    """Effective HBM bytes per gradient of passes over a contiguous gradient buffer
    (stack.grad_buffer_passes, simtrain.workload.kernels.GRAD_PASSES): (reads + writes) of
    `grad_bytes` each, x UNMEASURED_OVERHEAD."""
    return sum(GRAD_PASSES[p].reads + GRAD_PASSES[p].writes for p in passes) * grad_bytes * UNMEASURED_OVERHEAD


def grad_buffer_time(dev: Device, params: float, grad_bytes: int, passes: tuple[str, ...], buckets: int = 1) -> float:
    """Those passes over `params` gradients, memory-bound at streaming bandwidth, one kernel
    per pass per buffer, or per bucket for the per-bucket passes."""
    if not passes or params <= 0:
        return 0.0
    kernels = sum(buckets if GRAD_PASSES[p].per_bucket else 1 for p in passes)
    return memory_time(dev, grad_pass_bytes(passes, grad_bytes) * params, kernels)
