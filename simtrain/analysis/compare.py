"""Compare two simulated steps and attribute their MFU difference to its causes.

The decomposition is exact and symmetric. Let W be the model work of one GPU per step
in seconds at peak,  W = model FLOPs / (GPUs x peak)  = MFU x T,  and let the step time
T split into the simulator's parts (metrics.PARTS, averaged over devices, summing to T):
    T = t_compute + t_recompute + t_optimizer + t_tp + t_cp + t_pp + t_dp + t_bubble.
Dividing by W makes the inverse of MFU additive:
    1/MFU = T/W = 1/eta + sum_k x_k,     eta = W / t_compute,   x_k = t_k / W,
where eta is the compute efficiency (fraction of peak while computing F/B/W) and x_k the
seconds of part k per second of ideal work. Between A and B,
    MFU_B - MFU_A = -MFU_A * MFU_B * (1/MFU_B - 1/MFU_A)
                  = -MFU_A * MFU_B * [ d(1/eta) + sum_k d(x_k) ],
so each cause gets
    compute efficiency: -MFU_A * MFU_B * (1/eta_B - 1/eta_A)
    part k:             -MFU_A * MFU_B * (x_k,B - x_k,A)
and the contributions add up to the MFU difference exactly (to rounding). No ordering of
the causes is needed, and swapping A and B negates every contribution. A part that grows
relative to the useful work costs MFU points; less bubble per unit of work gains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simtrain.analysis.metrics import PARTS
from simtrain.analysis.report import PART_NAMES

CAUSES = ("compute_efficiency",) + tuple(p for p in PARTS if p != "compute")
CAUSE_NAMES = {"compute_efficiency": "compute efficiency", **PART_NAMES}


@dataclass(frozen=True)
class Side:
    """What the attribution needs from one simulated step."""

    label: str
    mfu: float
    step_time_s: float
    breakdown: dict[str, float]  # seconds by part, summing to step_time_s
    hfu: float = 0.0
    tflops_per_gpu: float = 0.0
    layout: dict[str, Any] = field(default_factory=dict)
    num_gpus: int = 0
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def work_s(self) -> float:
        """W: per-GPU model work at peak, seconds (= MFU x T)."""
        return self.mfu * self.step_time_s

    @property
    def compute_efficiency(self) -> float:
        c = self.breakdown.get("compute", 0.0)
        return self.work_s / c if c > 0 else 0.0


def attribute(a: Side, b: Side) -> dict[str, float]:
    """MFU points (fractions, B - A) per cause; the values sum to b.mfu - a.mfu."""
    wa, wb = a.work_s, b.work_s
    if wa <= 0 or wb <= 0 or a.breakdown.get("compute", 0) <= 0 or b.breakdown.get("compute", 0) <= 0:
        raise ValueError("attribution needs positive MFU and compute time on both sides")
    k = -a.mfu * b.mfu
    out = {"compute_efficiency": k * (b.breakdown["compute"] / wb - a.breakdown["compute"] / wa)}
    for p in CAUSES[1:]:
        out[p] = k * (b.breakdown.get(p, 0.0) / wb - a.breakdown.get(p, 0.0) / wa)
    # The identity needs sum(parts) = T on both sides; put any residual of the averaged
    # breakdown (rounding, or parts the engine does not record) in its own line.
    residual = (b.mfu - a.mfu) - sum(out.values())
    out["unattributed"] = residual
    return out


def side_from_result(label: str, result: Any) -> Side:
    from simtrain.workload.memory import estimate

    plan = result.extra.get("plan")
    memory = estimate(plan).to_json() if plan is not None else {}
    if memory:
        memory = {k: memory[k] for k in ("peak_memory_gib", "capacity_gib", "fits_in_memory", "peak_stage")}
    return Side(label, result.mfu, result.step_time_s, dict(result.breakdown), result.hfu,
                result.tflops_per_gpu, dict(result.layout), result.num_gpus, memory)


def side_from_row(label: str, row: dict[str, Any]) -> Side:
    """A Side from a sweep/search row (its `breakdown_<part>` columns)."""
    parts = {k[len("breakdown_"):]: float(v) for k, v in row.items() if k.startswith("breakdown_") and v is not None}
    return Side(label, float(row["mfu"]), float(row["step_time_s"]), parts)


def why(winner: Side, other: Side, top: int = 3) -> str:
    """One line: the MFU points by which `winner` beats `other`, and the largest causes."""
    parts = attribute(other, winner)
    big = sorted((c for c in parts if c != "unattributed" and abs(parts[c]) >= 5e-4), key=lambda c: -abs(parts[c]))[:top]
    causes = ", ".join(f"{CAUSE_NAMES[c]} {100 * parts[c]:+.1f}" for c in big)
    return f"{100 * (winner.mfu - other.mfu):+.1f} MFU points over {other.label}" + (f": {causes}" if causes else "")


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    attribution: dict[str, float]

    @property
    def mfu_difference(self) -> float:
        return self.b.mfu - self.a.mfu

    def to_json(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"label": s.label, "mfu": s.mfu, "hfu": s.hfu, "step_time_s": s.step_time_s,
                    "tflops_per_gpu": s.tflops_per_gpu, "compute_efficiency": s.compute_efficiency,
                    "num_gpus": s.num_gpus, "layout": s.layout, "breakdown": s.breakdown, "memory": s.memory}

        return {
            "a": side(self.a),
            "b": side(self.b),
            "mfu_difference": self.mfu_difference,
            "attribution": self.attribution,
            "method": "MFU_B - MFU_A = -MFU_A*MFU_B*[d(t_compute/W) + sum_k d(t_k/W)], W = MFU*T (simtrain.analysis.compare)",
        }

    def to_dict(self) -> dict[str, Any]:
        """The same as to_json(): what `simtrain compare --json` prints."""
        return self.to_json()

    def text(self) -> str:
        a, b = self.a, self.b
        w = 24
        lines = ["simtrain compare", f"  A = {a.label}", f"  B = {b.label}", ""]

        def row(name: str, va: str, vb: str, extra: str = "") -> str:
            return f"  {name:<30} {va:>{w}} {vb:>{w}}  {extra}".rstrip()

        def lay(s: Side) -> str:
            L = s.layout
            return f"TP{L.get('tp')} CP{L.get('cp')} PP{L.get('pp')} DP{L.get('dp')} VP{L.get('vp')}" if L else "?"

        lines.append(row("", "A", "B", "B - A"))
        lines.append(row("GPUs", f"{a.num_gpus:,}", f"{b.num_gpus:,}"))
        lines.append(row("layout", lay(a), lay(b)))
        if a.layout and b.layout:
            lines.append(row("micro-batches per replica", str(a.layout.get("microbatches_per_replica")),
                             str(b.layout.get("microbatches_per_replica"))))
        lines.append(row("step time", f"{a.step_time_s:.3f} s", f"{b.step_time_s:.3f} s",
                         f"{b.step_time_s - a.step_time_s:+.3f} s"))
        lines.append(row("MFU", f"{100 * a.mfu:.2f} %", f"{100 * b.mfu:.2f} %", f"{100 * self.mfu_difference:+.2f} points"))
        lines.append(row("HFU", f"{100 * a.hfu:.2f} %", f"{100 * b.hfu:.2f} %"))
        lines.append(row("TFLOP/s per GPU (model)", f"{a.tflops_per_gpu:.0f}", f"{b.tflops_per_gpu:.0f}"))
        lines.append(row("compute efficiency", f"{100 * a.compute_efficiency:.1f} % of peak",
                         f"{100 * b.compute_efficiency:.1f} % of peak"))
        if a.memory and b.memory:
            def mem(s: Side) -> str:
                return f"{s.memory['peak_memory_gib']:.1f} of {s.memory['capacity_gib']:.1f} GiB"

            def fits(s: Side) -> str:
                return "yes" if s.memory["fits_in_memory"] else "no (still simulated)"
            lines.append(row("peak memory per GPU", mem(a), mem(b),
                             f"{b.memory['peak_memory_gib'] - a.memory['peak_memory_gib']:+.1f} GiB"))
            lines.append(row("fits in memory", fits(a), fits(b)))
        lines.append("")
        lines.append(row("step breakdown (mean)", "seconds  share", "seconds  share", "B - A s"))
        for p in PARTS:
            ta, tb = a.breakdown.get(p, 0.0), b.breakdown.get(p, 0.0)
            if ta <= 0 and tb <= 0:
                continue
            lines.append(row(PART_NAMES[p], f"{ta:8.3f} {100 * ta / a.step_time_s:5.1f}%",
                             f"{tb:8.3f} {100 * tb / b.step_time_s:5.1f}%", f"{tb - ta:+.3f}"))
        lines.append("")
        lines.append(f"  MFU difference B - A: {100 * self.mfu_difference:+.2f} points, attributed to")
        order = sorted(self.attribution.items(), key=lambda kv: -abs(kv[1]))
        for cause, v in order:
            if cause == "unattributed" and abs(v) < 5e-5:
                continue
            if cause != "compute_efficiency" and abs(v) < 5e-5 and a.breakdown.get(cause, 0) <= 0 and b.breakdown.get(cause, 0) <= 0:
                continue
            lines.append(f"    {CAUSE_NAMES.get(cause, cause):<30} {100 * v:+7.2f}")
        lines.append(f"    {'total':<30} {100 * sum(self.attribution.values()):+7.2f}")
        lines.append("  (each part's seconds per second of ideal model work, times -MFU_A*MFU_B; see simtrain/analysis/compare.py)")
        return "\n".join(lines)


def compare_results(label_a: str, result_a: Any, label_b: str, result_b: Any) -> Comparison:
    a, b = side_from_result(label_a, result_a), side_from_result(label_b, result_b)
    return Comparison(a, b, attribute(a, b))
