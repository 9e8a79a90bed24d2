"""The per-layer kernel table (`simtrain run --ops`, `ops` in `--json`): every kernel of one
transformer layer for one micro-batch on one rank, with its launches, GPU time and share,
grouped by phase, plus the host launch time that bounds a pass when the GPU work is
smaller (simtrain.workload.costs)."""

from __future__ import annotations

from typing import Any

from simtrain.workload import fp8 as FP8
from simtrain.workload.ops import PHASES, Op, layer_ops


def _moe_block_ops(mc: Any) -> list[Op]:
    """An MoE layer's MLP block as rows (simtrain.workload.moe.MoECost, the hottest EP rank):
    the work before the dispatch (norm, router, top-k, permute, shared experts), the local
    experts' grouped GEMMs and activation, the work after the combine (unpermute, residual),
    and the weight gradients. The all-to-alls themselves are network flows, not kernels here."""
    return [Op("moe pre", "moe", 1, "fwd", mc.pre_fwd, 0), Op("experts", "moe", 1, "fwd", mc.experts_fwd, 0),
            Op("moe post", "moe", 1, "fwd", mc.post_fwd, 0), Op("moe pre", "moe", 1, "bwd", mc.pre_bwd, 0),
            Op("experts", "moe", 1, "bwd", mc.experts_bwd, 0), Op("moe post", "moe", 1, "bwd", mc.post_bwd, 0),
            Op("experts", "moe", 1, "wgrad", mc.wgrad, 0)]


def layer_op_rows(plan: Any) -> list[dict[str, Any]]:
    s = plan.scenario
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len, s.training.document_length,
                    FP8.workload_precision(s.training.precision, s.training.fp8_recipe), s.training.grad_precision,
                    plan.tp_gather_s)
    moe = next((st.moe for st in plan.stages if st.moe is not None and st.layers > st.dense_layers), None)
    if moe is not None:  # an MoE layer: the attention block's kernels, then the MoE block
        ops = tuple(o for o in ops if o.segment == 0) + tuple(_moe_block_ops(moe))
    total = sum(o.seconds for o in ops)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for o in ops:
        key = (o.phase, o.name)
        r = rows.setdefault(key, {"phase": o.phase, "kernel": o.name, "kind": o.kind, "count": 0, "seconds": 0.0,
                                  "tflops": 0.0, "gbytes": 0.0})
        r["count"] += o.kernels
        r["seconds"] += o.seconds
        r["tflops"] += o.flops / 1e12
        r["gbytes"] += o.nbytes / 1e9
    out = list(rows.values())
    for r in out:
        r["share"] = r["seconds"] / total if total else 0.0
        r["achieved_tflops_per_s"] = r["tflops"] / r["seconds"] if r["seconds"] and r["tflops"] else None
    return out


def ops_json(plan: Any) -> dict[str, Any]:
    s = plan.scenario
    lc = plan.stages[0].layer
    moe = any(st.moe is not None for st in plan.stages)
    return {
        "scope": "one transformer layer, one micro-batch, one rank (seconds of GPU time)"
        + ("; an MoE layer: attention kernels, then the MoE block on the hottest EP rank (all-to-alls are "
           "network time, not here)" if moe else ""),
        "stack": s.stack.name,
        "launch_us": s.stack.launch_us,
        "launch_factor": {"fwd": lc.launch_factor[0], "bwd": lc.launch_factor[1]},
        "kernels": layer_op_rows(plan),
    }


def ops_text(plan: Any) -> str:
    data = ops_json(plan)
    rows = data["kernels"]
    lines = [f"  per-layer kernels (one micro-batch, one rank; stack {data['stack']}, {data['launch_us']:g} us host time per launch)"]
    if "MoE layer" in data["scope"]:
        lines.append("  an MoE layer: the attention block's kernels, then the MoE block on the hottest expert-parallel rank "
                     "(its all-to-alls are network time, in the step breakdown)")
    w = max([20] + [len(r["kernel"]) for r in rows])  # the kernel column fits the longest name
    lines += [
             f"    {'phase':<6} {'kernel':<{w}} {'kind':<9} {'launches':>8} {'time us':>10} {'share':>7} {'TFLOP/s':>8}"]
    for phase in PHASES:
        for r in (x for x in rows if x["phase"] == phase):
            rate = f"{r['achieved_tflops_per_s']:.0f}" if r["achieved_tflops_per_s"] else ""
            count = r["count"] or "-"  # the MoE block's rows are sums of many kernels
            lines.append(f"    {phase:<6} {r['kernel']:<{w}} {r['kind']:<9} {count:>8} {1e6 * r['seconds']:>10.1f} "
                         f"{100 * r['share']:>6.1f}% {rate:>8}")
    kf = data["launch_factor"]
    for name, f in (("forward", kf["fwd"]), ("backward", kf["bwd"])):
        if f > 1:
            lines.append(f"    {name} is launch-bound: the host issues its kernels {f:.2f}x slower than the GPU runs them")
    return "\n".join(lines)


__all__ = ["Op", "layer_op_rows", "ops_json", "ops_text"]
