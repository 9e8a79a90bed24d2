"""Which forward work "selective" recomputation runs again, as Megatron-Core's
`--recompute-modules` names it (megatron/core/transformer/transformer_config.py,
`recompute_modules`; default ["core_attn"], Korthikanti et al. 2022):

    core_attn    the attention core (QK^T, softmax, AV); FlashAttention recomputes its
                 scores anyway, so with it there is nothing left to do
    layernorm    the input and pre-MLP norms: their outputs (the QKV and MLP-up GEMM
                 inputs) are not kept
    mla_up_proj  multi-head latent attention's up projections, bottleneck norms and rotary:
                 Q, K, V are rebuilt from the kept bottlenecks before the attention backward
                 (DeepSeek-V3 §3.2.3 recomputes RMSNorms and MLA up-projections the same way)
    mlp          a dense MLP block, from its input
    moe_act      the experts' activation (SwiGLU): its output, the down projection's input,
                 is not kept (DeepSeek-V3 §3.3.3: "recompute the output in the backward pass")

Memory follows in simtrain.workload.memory and simtrain.workload.moe; the extra forward
time and FLOPs here, from a layer's kernel list (simtrain.workload.ops)."""

from __future__ import annotations

from typing import Any

MODULES = ("core_attn", "layernorm", "mla_up_proj", "mlp", "moe_act")
DEFAULT = frozenset({"core_attn"})

# the forward kernels of simtrain.workload.ops each module runs again
_OPS = {
    "layernorm": {"input norm", "post-attn norm"},
    "mla_up_proj": {"q up", "kv up", "q norm", "kv norm", "rotary"},
    "mlp": {"mlp up", "mlp down", "swiglu", "gelu", "bias-gelu"},
}


def modules(recompute: str, recompute_modules: tuple[str, ...] = ()) -> frozenset[str]:
    """The modules a `recompute` mode with `recompute_modules` reruns (empty unless
    "selective"; an empty list is Megatron-Core's default, core_attn)."""
    if recompute != "selective":
        return frozenset()
    return frozenset(recompute_modules) if recompute_modules else DEFAULT


def selected(par: Any, recompute: str | None = None) -> frozenset[str]:
    """The modules `par` (a ParallelConfig) recomputes; `recompute` overrides its mode."""
    return modules(recompute or par.recompute, par.recompute_modules)


def forward_ops(ops: Any, modules: frozenset[str], flash: bool, dense_mlp: bool = True) -> list:
    """The forward kernels of one layer that `modules` run again before its backward
    (`dense_mlp` False: the layer's MLP is a mixture of experts, which `mlp` leaves alone)."""
    names: set[str] = set()
    for m in modules:
        if m == "mlp" and not dense_mlp:
            continue
        names |= _OPS.get(m, set())
    out = [o for o in ops if o.phase == "fwd" and o.name in names]
    if "core_attn" in modules and not flash:
        out += [o for o in ops if o.phase == "fwd" and o.recompute]
    return out
