"""The per-layer kernel table (`simtrain run --ops`, `ops` in `--json`): every kernel of one
transformer layer for one micro-batch on one rank, with its launches, GPU time and share,
grouped by phase, plus the host launch time that bounds a pass when the GPU work is
smaller (simtrain.workload.costs)."""

from __future__ import annotations

from typing import Any

from simtrain.workload.ops import PHASES, Op, layer_ops


def layer_op_rows(plan: Any) -> list[dict[str, Any]]:
    s = plan.scenario
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len, s.training.document_length,
                    s.training.precision)
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
    return {
        "scope": "one transformer layer, one micro-batch, one rank (seconds of GPU time)",
        "stack": s.stack.name,
        "launch_us": s.stack.launch_us,
        "launch_factor": {"fwd": lc.launch_factor[0], "bwd": lc.launch_factor[1]},
        "kernels": layer_op_rows(plan),
    }


def ops_text(plan: Any) -> str:
    data = ops_json(plan)
    rows = data["kernels"]
    lines = [f"  per-layer kernels (one micro-batch, one rank; stack {data['stack']}, {data['launch_us']:g} us host time per launch)",
             f"    {'phase':<6} {'kernel':<20} {'kind':<9} {'launches':>8} {'time us':>10} {'share':>7} {'TFLOP/s':>8}"]
    for phase in PHASES:
        for r in (x for x in rows if x["phase"] == phase):
            rate = f"{r['achieved_tflops_per_s']:.0f}" if r["achieved_tflops_per_s"] else ""
            lines.append(f"    {phase:<6} {r['kernel']:<20} {r['kind']:<9} {r['count']:>8} {1e6 * r['seconds']:>10.1f} "
                         f"{100 * r['share']:>6.1f}% {rate:>8}")
    kf = data["launch_factor"]
    for name, f in (("forward", kf["fwd"]), ("backward", kf["bwd"])):
        if f > 1:
            lines.append(f"    {name} is launch-bound: the host issues its kernels {f:.2f}x slower than the GPU runs them")
    return "\n".join(lines)


__all__ = ["Op", "layer_op_rows", "ops_json", "ops_text"]
