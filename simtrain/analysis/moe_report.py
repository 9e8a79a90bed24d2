"""What a mixture-of-experts step looks like: the per-expert load and the all-to-all sizes
(the `moe` block of `run --json` and the report's experts line)."""

from __future__ import annotations

from typing import Any

from simtrain.engine.plan import Plan
from simtrain.scenario.models import moe_layers


def moe_summary(plan: Plan) -> dict[str, Any] | None:
    """Per-expert load on the hottest EP rank and the bytes one rank dispatches, per MoE
    layer and micro-batch; None for dense models."""
    st = next((s for s in plan.stages if s.moe is not None), None)
    if st is None:
        return None
    mc, m, L = st.moe, plan.scenario.model, plan.layout
    balanced = mc.tokens * mc.k * L.ep / mc.experts
    return {
        "experts": mc.experts, "top_k": mc.k, "ep": L.ep, "etp": L.etp, "edp": L.edp,
        "experts_per_rank": mc.experts // L.ep,
        "node_limit": plan.scenario.parallel.ep_node_limit,
        "tokens_routed_per_rank": mc.tokens,
        "tokens_per_expert": list(mc.expert_tokens),  # the hottest rank's local experts, hottest first
        "tokens_per_expert_balanced": balanced,
        "rank_shares": list(mc.shares),  # share of the copies each EP rank receives
        "dispatch_bytes_per_rank": mc.tokens * mc.k * mc.dispatch_token_bytes * (1 - 1 / L.ep) if L.ep > 1 else 0.0,
        "moe_layers": sum(s.layers - s.dense_layers for s in plan.stages) // plan.schedule.chains,
        "dense_layers": m.num_hidden_layers - moe_layers(m),
        "active_params": plan.model.active_params,
    }


def moe_line(s: dict[str, Any]) -> str:
    load = s["tokens_per_expert"]
    hot, bal = max(load), s["tokens_per_expert_balanced"]
    lim = f", each token to at most {s['node_limit']} nodes" if s["node_limit"] else ""
    return (f"  experts   {s['experts']} per MoE layer, top-{s['top_k']}, EP{s['ep']} ({s['experts_per_rank']} per rank, "
            f"ETP{s['etp']}, EDP{s['edp']}){lim}; per-expert load per micro-batch: hottest {hot:,.0f} tokens "
            f"({hot / bal:.2f}x the balanced {bal:,.0f})")
