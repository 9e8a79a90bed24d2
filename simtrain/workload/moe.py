"""Mixture-of-experts layers: the MLP block of an MoE layer for one micro-batch on one rank,
as Megatron-Core's MoE layer (all-to-all token dispatcher, grouped GEMM) runs it.

Per MoE layer, after the attention block (priced as for a dense layer):
    norm -> router GEMM (h x E) -> top-k (softmax over E) -> permute (gather the token
    copies by expert) -> [dispatch all-to-all over EP] -> grouped GEMMs of the local
    experts (up/gate, activation, down) -> [combine all-to-all] -> unpermute (weighted
    scatter-add) -> residual; the shared experts run on every token like a dense MLP.
The all-to-alls are flows on the network (simtrain.network.alltoall), run by the engine.

Tokens: a rank holds t = b*s/cp tokens. With the experts' TP `etp` = 1 each TP rank routes
t/tp of them (Megatron splits the TP group's tokens before dispatch); with etp = tp every
TP rank routes all t and computes 1/tp of each expert's width. Each EP rank receives the
(token, expert) copies of its E/EP experts: t_r * k * EP * share, share = 1/EP when
balanced. With `whatif.expert_imbalance` x (the hottest expert's share of all copies) the
hottest expert gets x * t_r * k * EP tokens and its rank's other experts the balanced
rest; every EP rank waits for that one at the combine, so the layer runs at its pace:
the costs here are the hottest rank's. A capacity factor cf caps any expert at cf times
its balanced share (the excess is dropped, as in GShard/Switch routing).

Grouped GEMM: the local experts' GEMMs are one kernel whose tiles spread over the SMs
(the tile model of simtrain.workload.compute with `batch` = experts): experts with few
tokens each lose to wave quantization and short M, as measured grouped GEMMs do.
Permute and unpermute move each token copy once (read 2 B, write 2 B per element) x1.3
(this project's fused-kernel overhead, simtrain.workload.kernels): 5.2 B per element.
FP8 (simtrain.workload.fp8): expert and shared-expert GEMMs at the FP8 peak with their
cast kernels; the dispatch then moves FP8 tokens (DeepSeek-V3 §3.3.2: dispatch in FP8,
combine in BF16).
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.hardware.devices import Device
from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.errors import bad
from simtrain.scenario.models import ModelConfig
from simtrain.workload import fp8 as FP8
from simtrain.workload import recompute as R
from simtrain.workload.compute import gemm_flops, gemm_time, memory_time, op_time

PERMUTE_BYTES = 5.2  # per element moved by permute / unpermute: read 2 + write 2, x1.3
ROUTER_BYTES = 4.0  # fp32 router logits kept per (token, expert) for the backward


@dataclass(frozen=True)
class MoECost:
    """The MLP block of one MoE layer, one micro-batch, the hottest EP rank (seconds)."""

    pre_fwd: float  # norm, router, top-k, permute, shared experts
    experts_fwd: float  # grouped GEMMs + activation of the local experts
    post_fwd: float  # unpermute + residual
    pre_bwd: float
    experts_bwd: float  # input gradients of the local experts
    post_bwd: float
    wgrad: float  # weight gradients: experts, shared experts, router
    tokens: float  # tokens each rank dispatches (t_r)
    dispatch_token_bytes: float  # bytes per token copy in the forward dispatch
    token_bytes: float  # combine and backward: bf16 hidden state
    k: int
    experts: int
    shares: tuple[float, ...]  # share of the (token, expert) copies each EP rank receives
    expert_tokens: tuple[float, ...]  # tokens per local expert on the hottest rank
    model_flops: float  # fwd + bwd model FLOPs of the MLP block (active experts)
    act_fwd: float = 0.0  # the local experts' activation kernel, forward (what moe_act recomputes)
    # Whether the block runs a TP collective pair (all-gather of the sequence-sharded tokens
    # before it, reduce-scatter after): shared experts (a TP-sharded dense MLP over every
    # token) or experts with their own TP (etp > 1) need the gathered tokens; routed experts
    # with etp 1 take each TP rank's own tokens, so the block runs none (Megatron-Core
    # MoEAlltoAllTokenDispatcher: permute -> A2A(EP) -> AG(expert TP) -> sort_chunk, its TP
    # group the experts' TP group; token_dispatcher.py)
    tp_block: bool = True

    @property
    def fwd(self) -> float:
        return self.pre_fwd + self.experts_fwd + self.post_fwd

    @property
    def bwd(self) -> float:
        return self.pre_bwd + self.experts_bwd + self.post_bwd


def check_imbalance(x: float, experts: int) -> None:
    if x and not 1.0 / experts <= x <= 1.0:
        raise bad("whatif.expert_imbalance", x, f"must be 0 (balanced) or a share between 1/{experts} and 1",
                  f"give the hottest expert's share of the routed tokens, e.g. {min(1.0, 2.0 / experts):.3g}")


def routing(model: ModelConfig, par: ParallelConfig, seq_len: int, imbalance: float = 0.0):
    """(t_r tokens routed per rank, per-EP-rank shares, tokens per local expert on the
    hottest rank) for one micro-batch."""
    E, k, ep = model.num_experts, model.num_experts_per_tok, par.ep
    t = par.micro_batch * seq_len / par.cp
    t_r = t / par.tp if par.etp == 1 else t
    local = E // ep
    total = t_r * k * ep  # (token, expert) copies in the EP group
    balanced = total / E
    if imbalance and imbalance > 1.0 / E:
        hot = imbalance * total
        rest = (total - hot) / (E - 1)
        per_expert = (hot,) + (rest,) * (local - 1)
        hot_share = (hot + rest * (local - 1)) / total
        shares = (hot_share,) + ((1 - hot_share) / (ep - 1),) * (ep - 1) if ep > 1 else (1.0,)
    else:
        per_expert = (balanced,) * local
        shares = (1.0 / ep,) * ep
    if model.capacity_factor:
        cap = model.capacity_factor * balanced
        per_expert = tuple(min(m, cap) for m in per_expert)
    return t_r, shares, per_expert


def _grouped(dev: Device, per_expert: tuple[float, ...], n: int, k: int) -> float:
    """One grouped GEMM (m_e x k) @ (k x n) over the local experts, m_e tokens each."""
    sizes: dict[int, int] = {}
    for m in per_expert:
        mi = max(1, round(m))
        sizes[mi] = sizes.get(mi, 0) + 1
    # experts of equal size share the launch; different sizes are further tiles of the same
    # kernel: the fixed per-kernel cost is paid once
    t = sum(gemm_time(dev, m, n, k, batch=c) - dev.kernel_overhead_s for m, c in sizes.items())
    return t + dev.kernel_overhead_s


def moe_cost(model: ModelConfig, par: ParallelConfig, dev: Device, fused_norm: bool, fused_act: bool, seq_len: int,
             precision: str = "bf16", imbalance: float = 0.0) -> MoECost:
    h, E, k = model.hidden_size, model.num_experts, model.num_experts_per_tok
    fe = model.moe_intermediate_size // par.etp
    fs = model.shared_expert_intermediate_size // par.tp
    gated = model.mlp == "gated"
    up = (2 if gated else 1)
    fp8 = FP8.is_fp8(precision)
    recipe = FP8.recipe_of(precision)
    g = FP8.fp8_device(dev, recipe) if fp8 else dev
    t = par.micro_batch * seq_len / par.cp
    sp = par.sequence_parallel and par.tp > 1
    t_sp = t / par.tp if sp else t
    t_r, shares, per_expert = routing(model, par, seq_len, imbalance)
    received = sum(per_expert)
    norm = "rmsnorm" if model.norm == "rmsnorm" else "layernorm"
    act = "swiglu" if gated else "gelu"

    def mem(name: str, fused: bool, elements: float, backward: bool) -> float:
        return op_time(dev, name, fused, elements, backward)[0]

    def gemm3(m: float, n: int, kk: int) -> tuple[float, float, float]:
        mi = max(1, round(m))
        return gemm_time(g, mi, n, kk), gemm_time(g, mi, kk, n), gemm_time(g, kk, n, mi)

    # router (bf16, replicated over TP for its tokens) and top-k
    r_f, r_b, r_w = (gemm_time(dev, max(1, round(t_r)), E, h), gemm_time(dev, max(1, round(t_r)), h, E),
                     gemm_time(dev, h, E, max(1, round(t_r))))
    topk_f, topk_b = mem("softmax", True, t_r * E, False), mem("softmax", True, t_r * E, True)
    perm = memory_time(dev, PERMUTE_BYTES * t_r * k * h)
    # shared experts: a dense MLP of width fs over every token of the rank
    sh = [gemm3(t, up * fs, h), gemm3(t, h, fs)] if fs else []
    sh_act = (mem(act, fused_act, t * fs, False), mem(act, fused_act, t * fs, True)) if fs else (0.0, 0.0)
    # local experts: grouped GEMMs over their tokens
    ex_up_f = _grouped(g, per_expert, up * fe, h)
    ex_up_b = _grouped(g, per_expert, h, up * fe)
    ex_dn_f = _grouped(g, per_expert, h, fe)
    ex_dn_b = _grouped(g, per_expert, fe, h)
    ex_w = sum(gemm_time(g, h, up * fe, max(1, round(m))) + gemm_time(g, fe, h, max(1, round(m))) for m in per_expert)
    ex_act_f, ex_act_b = mem(act, fused_act, received * fe, False), mem(act, fused_act, received * fe, True)
    casts_f = casts_b = 0.0
    if fp8:  # cast-transposes of the expert and shared-expert GEMM inputs / output gradients
        casts_f = (FP8.cast_seconds(dev, received * (h + fe), recipe)
                   + (FP8.cast_seconds(dev, t * (h + fs), recipe) if fs else 0.0))
        casts_b = (FP8.cast_seconds(dev, received * (up * fe + h), recipe)
                   + (FP8.cast_seconds(dev, t * (up * fs + h), recipe) if fs else 0.0))
    norm_f, norm_b = mem(norm, fused_norm, t_sp * h, False), mem(norm, fused_norm, t_sp * h, True)
    res = mem("residual", True, t_sp * h, False)
    pre_f = norm_f + r_f + topk_f + perm + sum(x[0] for x in sh) + sh_act[0]
    pre_b = norm_b + r_b + topk_b + perm + sum(x[1] for x in sh) + sh_act[1]
    experts_f = ex_up_f + ex_act_f + ex_dn_f + casts_f
    experts_b = ex_dn_b + ex_act_b + ex_up_b + casts_b
    wgrad = r_w + ex_w + sum(x[2] for x in sh)
    # model FLOPs (PaLM: 3 x forward GEMM FLOPs): the active experts of this rank's tokens
    per_tok = gemm_flops(1, E, h) + k * ((up + 1) * gemm_flops(1, model.moe_intermediate_size, h))
    per_tok += (up + 1) * gemm_flops(1, model.shared_expert_intermediate_size, h)
    flops = 3 * per_tok * t / par.tp
    tb = 2.0 * h
    return MoECost(pre_f, experts_f, perm + res, pre_b, experts_b, perm + res, wgrad, t_r,
                   (1.0 if fp8 else 2.0) * h, tb, k, E, shares, per_expert, flops, ex_act_f,
                   tp_block=bool(fs) or par.etp > 1)


def moe_activation_bytes(model: ModelConfig, par: ParallelConfig, seq_len: int, imbalance: float = 0.0,
                         recompute: str = "none", fp8: bool = False, fp8_act_input: bool = False) -> float:
    """Bytes the MLP block of one MoE layer keeps for the backward, one micro-batch, the
    hottest rank: the router's fp32 logits, each received token copy's expert input (2h)
    and its gate/up outputs and down input (3 x 2 fe, SwiGLU; 2 x 2 fe plain), the shared
    experts' as a dense MLP (simtrain.workload.memory). Full recomputation keeps none."""
    if recompute == "full":
        return 0.0
    h = model.hidden_size
    fe = model.moe_intermediate_size // par.etp
    fs = model.shared_expert_intermediate_size // par.tp
    inner = 6 if model.mlp == "gated" else 4
    # moe_act (simtrain.workload.recompute): the experts' activation output (2 fe, the down
    # projection's input) is recomputed, not kept
    act_out = 0 if "moe_act" in R.selected(par, recompute) else 2  # the activation output, 2 B per element
    # FP8 (Transformer Engine's rule for every linear, simtrain.workload.fp8): each expert
    # GEMM input is kept in FP8, 1 byte: the token copy (h) and the down projection's input
    inp, act_out = (1, act_out / 2) if fp8 else (2, act_out)
    # the activation's input (gate and up outputs, 2 x fe for SwiGLU): bf16, or FP8 where the
    # stack caches it so (DeepSeek-V3 §3.3.3)
    act_in = (inner - 2) / (2 if fp8 and fp8_act_input else 1)
    inner_e = act_in + act_out
    t = par.micro_batch * seq_len / par.cp
    t_r, _, per_expert = routing(model, par, seq_len, imbalance)
    return t_r * model.num_experts * ROUTER_BYTES + sum(per_expert) * (inp * h + inner_e * fe) + t * inner * fs


def dispatch_buffer_bytes(model: ModelConfig, par: ParallelConfig, seq_len: int, imbalance: float = 0.0) -> float:
    """The permuted send buffer and the receive buffer of one dispatch (bf16), live during
    the MoE block: t_r * k + received copies, h elements each."""
    t_r, _, per_expert = routing(model, par, seq_len, imbalance)
    return 2.0 * model.hidden_size * (t_r * model.num_experts_per_tok + sum(per_expert))


def expert_params_per_layer(model: ModelConfig, par: ParallelConfig) -> float:
    """Routed-expert weights one rank holds per MoE layer: E/EP experts, 1/etp of each."""
    per = (3 if model.mlp == "gated" else 2) * model.hidden_size * model.moe_intermediate_size
    return model.num_experts // par.ep * per / par.etp


def moe_layer_costs(model: ModelConfig, par: ParallelConfig, dev: Device, seq_len: int, stack, document_length: int,
                    precision: str, imbalance: float):
    """(LayerCost of an MoE layer, its MoECost): the dense layer's attention block and the
    MoE block in place of its MLP. `fwd[1]`/`bwd_input[1]` hold the whole MoE block's
    compute (what bounds and summaries read); the engine runs it in its parts."""
    import dataclasses

    from simtrain.workload import ops as O
    from simtrain.workload.costs import layer_cost

    lc = layer_cost(model, par, dev, seq_len, stack, document_length, precision)
    ops = O.layer_ops(model, par, dev, stack, seq_len, document_length, precision)
    mc = moe_cost(model, par, dev, stack.norm == "fused", stack.activation == "fused", seq_len, precision, imbalance)
    attn_w = lc.launch_factor[1] * O.seconds(ops, "wgrad", 0)
    mlp_flops = 3 * sum(o.flops for o in ops if o.kind == "gemm" and o.phase == "fwd" and o.name in ("mlp up", "mlp down"))
    recompute, recompute_flops = lc.recompute, lc.recompute_flops
    mods = R.selected(par)
    if mods:  # selective modules of an MoE layer: `mlp` leaves the experts alone, moe_act redoes their activation
        redo = R.forward_ops(ops, mods, par.flash_attention, dense_mlp=False)
        recompute = lc.launch_factor[0] * sum(o.seconds for o in redo) + (mc.act_fwd if "moe_act" in mods else 0.0)
        recompute_flops = float(sum(o.flops for o in redo))
    return dataclasses.replace(lc, fwd=(lc.fwd[0], mc.fwd), bwd_input=(lc.bwd_input[0], mc.bwd),
                               bwd_weight=attn_w + mc.wgrad, wgrad_blocks=(lc.wgrad_parts()[0], (mc.wgrad, 0.0)),
                               recompute=recompute, recompute_flops=recompute_flops,
                               model_flops=lc.model_flops - mlp_flops + mc.model_flops), mc
