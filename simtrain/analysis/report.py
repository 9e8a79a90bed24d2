"""Human-readable report and JSON for one simulated step."""

from __future__ import annotations

import json
from typing import Any

from simtrain.analysis.metrics import PARTS, Result
from simtrain.analysis.moe_report import moe_line

PART_NAMES = {
    "compute": "compute (F/B/W)",
    "recompute": "recomputation",
    "optimizer": "optimizer step",
    "nccl_sm": "compute slowed by NCCL's SMs",
    "tp": "exposed TP comm",
    "cp": "exposed CP comm",
    "ep": "exposed EP comm",
    "pp": "exposed PP comm",
    "dp": "exposed DP comm",
    "bubble": "pipeline bubble",
}

TRAFFIC = {"tp": "TP", "cp": "CP", "ep": "EP all-to-all", "pp": "PP sends", "dp": "DP/FSDP", "other": "other"}


def _memory_parts(mem: dict[str, Any]) -> str:
    """What the peak rank's memory is made of, in GiB (simtrain.workload.memory.StageMemory)."""
    stages = mem.get("per_stage") or []
    st = next((x for x in stages if x.get("rank") == mem.get("peak_stage")), None)
    if st is None:
        return ""
    g = 2.0 ** 30
    parts = [("weights", st["parameters"]), ("gradients", st["gradients"]), ("optimizer", st["optimizer"]),
             ("activations", st["activations"] + st["end_activations"]), ("buffers", st["transient"]),
             ("workspace", st["workspace"]), ("fragmentation", st["fragmentation"])]
    text = ", ".join(f"{name} {v / g:.1f}" + (f" of {st['peak_in_flight']} (chunk, micro-batch) in flight" if name == "activations" else "")
                     for name, v in parts if v > 0)
    return f"pipeline rank {st['rank']} (GiB): {text}"


def text_report(r: Result) -> str:
    plan = r.extra.get("plan")
    L = r.layout
    lines = []
    title = f"simtrain: {r.scenario}"
    if plan and plan.scenario.description:
        title += f" — {plan.scenario.description}"
    lines.append(title)
    if plan:
        m = plan.scenario.model
        lines.append(f"  model     {m.name}: {r.params / 1e9:.1f}B parameters, {r.model_flops_per_token / 1e9:,.0f} GFLOP per token")
        lines.append(f"            ({r.flops_formula})")
        lines.append(f"  cluster   {r.num_gpus:,} x {r.device} on {plan.topology.name}")
    lines.append(
        f"  layout    TP{L['tp']} CP{L['cp']} PP{L['pp']} DP{L['dp']} VP{L['vp']}, micro-batch {L['micro_batch']}, "
        f"{L['microbatches_per_replica']} micro-batches per replica, {L['global_batch']:,} x {L['seq_len']:,} tokens per step"
    )
    params = "".join(f", {k} = {v}" for k, v in r.schedule_params.items())
    sim = L.get("classes")
    per = "every device" if sim == r.num_gpus else f"{sim:,} classes of devices"
    lines.append(f"  schedule  {r.schedule}{params} ({L['mode']} engine: {per} simulated)" if sim
                 else f"  schedule  {r.schedule}{params} ({L['mode']} engine)")
    if r.extra.get("moe"):
        lines.append(moe_line(r.extra["moe"]))
    lines.append("")
    rows = [
        ("step time", f"{r.step_time_s:.3f} s"),
        ("MFU", f"{100 * r.mfu:.1f} %" + _basis(r)),
        ("HFU", f"{100 * r.hfu:.1f} %"),
        ("TFLOP/s per GPU", f"{r.tflops_per_gpu:.0f} (model FLOPs)"),
        ("tokens/s", f"{r.tokens_per_s:,.0f}"),
        ("bubble fraction", f"{100 * r.bubble_fraction:.1f} %"),
    ]
    mem = r.extra.get("memory")
    if mem:
        over = mem["peak_memory_gib"] - mem["capacity_gib"]
        note = ""
        if not mem["fits_in_memory"]:
            note = f", does not fit: {over:.1f} GiB over (estimate; still simulated)"
            if over < mem.get("allowance_gib", 0.0):  # the tensors alone fit: say so
                note += (f"; the tensors alone take {mem['peak_memory_gib'] - mem['allowance_gib']:.1f} GiB, "
                         f"the rest is the assumed {mem['allowance_gib']:.1f} GiB workspace + fragmentation allowance")
        rows.append(("peak memory", f"{mem['peak_memory_gib']:.1f} GiB of {mem['capacity_gib']:.1f} GiB" + note))
        peak = _memory_parts(mem)
        if peak:
            rows.append(("", peak))
    w = max(len(k) for k, _ in rows)
    lines += [f"  {k.ljust(w)}  {v}" for k, v in rows]
    lines.append("")
    lines.append("  step breakdown (mean over GPUs)   seconds   share")
    for p in PARTS:
        v = r.breakdown.get(p, 0.0)
        if v <= 0 and p in ("recompute", "nccl_sm", "cp", "ep"):
            continue
        share = v / r.step_time_s if r.step_time_s else 0.0
        lines.append(f"    {PART_NAMES[p]:<30} {v:8.3f}  {100 * share:5.1f}%")
    wait = r.extra.get("host_wait_s", 0.0)
    if wait > 0:
        share = wait / r.step_time_s if r.step_time_s else 0.0
        lines.append(f"    (of compute and recomputation, {wait:.3f} s, {100 * share:.1f}%, is the GPU waiting for the host: "
                     "the stack's ZeRO-3 list collectives; `run --ops`)")
    pipe = r.extra.get("pipe_partition_s")
    if pipe:
        lines.append(f"    (DeepSpeed's TP-partitioned pipeline tensors: {pipe['all_gather']:.3f} s of all-gathers in "
                     f"exposed TP comm, {pipe['copies']:.3f} s of copies in compute; stack.pipe_partitioned)")
    tied = r.extra.get("tied_grad_allreduce_s")
    if tied:
        lines.append(f"    (of exposed DP comm, {tied:.3f} s is the tied word embedding's gradient all-reduce between the "
                     "first and last stage; stack.tied_grad_allreduce)")
    hs = r.extra.get("hotspots") or {}
    sd, bl = hs.get("slowest_device"), hs.get("busiest_link")
    if sd and sd["vs_median_of_stage"] > 0.005:
        lines.append(f"  slowest device: rank {sd['rank']} (pp{sd['pp']} dp{sd['dp']} tp{sd['tp']}), "
                     f"{sd['compute_s']:.3f} s of compute, {100 * sd['vs_median_of_stage']:+.1f}% vs its stage's median device")
    cp = hs.get("critical_path")
    if cp and cp.get("devices"):
        devs = ", ".join(f"rank {d['rank']} (pp{d['pp']}) {d['seconds']:.2f} s" for d in cp["devices"][:3])
        kinds = ", ".join(f"{k} {v:.2f} s" for k, v in list(cp["by_kind"].items())[:4])
        lines.append(f"  critical path: {devs}; by kind: {kinds}")
    lost = hs.get("contention") or {}
    shown = [(d, v) for d, v in lost.items() if v["seconds"] >= 1e-4 * r.step_time_s]
    if shown:
        parts = []
        for d, v in shown[:4]:
            who = "/".join(TRAFFIC.get(o, o) for o in v["shared_with"])
            where = "/".join(v["link_kinds"])
            parts.append(f"{TRAFFIC.get(d, d)} {v['seconds']:.3f} s" + (f" (sharing {where} with {who})" if who else ""))
        lines.append("  contention: time transfers took beyond their idle-link time: " + ", ".join(parts))
        d = max((d for d, _ in shown), key=lambda k: r.breakdown.get(k, 0.0))
        exposed = r.breakdown.get(d, 0.0) / r.step_time_s if r.step_time_s else 0.0
        if exposed > 0.5:  # a communication-bound step: why a faster device may not help
            lines.append(f"    the step is bound by {TRAFFIC.get(d, d)} traffic (exposed {100 * exposed:.0f}% of it): "
                         "what it loses to link sharing lengthens the step, and faster compute, bringing the "
                         "other traffic closer, can add to that")
    if bl:
        alike = f" (and {bl['links_alike'] - 1} alike)" if bl["links_alike"] > 1 else ""
        lines.append(f"  busiest link: {bl['link']}{alike}, {bl['kind']}, busy {100 * bl['utilization']:.0f}% of the step")
    for w in r.extra.get("warnings") or ():
        lines.append(f"  warning: {w}")
    lines.append(f"  simulated in {r.wall_time_s:.2f} s wall time")
    return "\n".join(lines)


def _basis(r: Result) -> str:
    """Which peak MFU is measured against, when it is not the obvious one (FP8 runs)."""
    fp8 = r.extra.get("mfu_fp8_peak")
    if fp8 is None:
        return ""
    return f" of the dense BF16 peak ({100 * fp8:.1f} % of the dense FP8 peak)"


def json_report(r: Result) -> dict[str, Any]:
    return r.to_dict()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=float)
