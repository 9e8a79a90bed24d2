"""Metrics from flat timeline records: step time, bubble, MFU/HFU, the step's breakdown.

MFU = model FLOPs per step / (step time x GPUs x peak FLOP/s)   (PaLM, Chowdhery et al. 2022)
The peak is the device's dense BF16 peak whatever the precision (FP8 runs too, as the
published tables do); `mfu_basis` says so, and FP8 runs add `mfu_fp8_peak`, the same
FLOPs against the dense FP8 peak.
HFU = (model FLOPs + recomputation FLOPs) / (step time x GPUs x peak)
Breakdown: each simulated device's step is partitioned into compute (F, B, W, recompute,
optimizer), exposed TP, CP, EP (expert all-to-all), PP and DP communication, and bubble (waiting for a pipeline
neighbour that has not sent yet, plus idling at the end of the step while others finish).
A wait whose sender was itself blocked on communication counts as that communication,
not as bubble (`simtrain.analysis.attribution`). The step-level breakdown averages the
devices; its parts add up to the step time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from simtrain.analysis.attribution import attribute_waits, bound_bubble, free_comm_step, tail_blame
from simtrain.engine.plan import Plan
from simtrain.engine.timeline import Record

_END = attrgetter("end")  # C-level getter: cheaper than a generator over millions of records
PARTS = ("compute", "recompute", "optimizer", "nccl_sm", "tp", "cp", "ep", "pp", "dp", "bubble")


@dataclass
class Result:
    scenario: str
    step_time_s: float
    mfu: float
    hfu: float
    tflops_per_gpu: float
    tokens_per_s: float
    bubble_fraction: float
    model_flops_per_token: float
    flops_formula: str
    num_gpus: int
    breakdown: dict[str, float]  # seconds, averaged over simulated devices
    per_stage: list[dict[str, float]]  # per pipeline rank: seconds by part
    layout: dict[str, Any]
    schedule: str
    device: str
    params: float
    schedule_params: dict[str, int] = field(default_factory=dict)  # e.g. llama3's n, default or given
    events: int = 0
    wall_time_s: float = 0.0
    engine_run_s: float = 0.0  # wall time of the event loop alone (no plan, setup or metrics)
    records: list[Record] = field(default_factory=list, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    # Wall-clock figures differ from run to run; the JSON leaves them out so that two runs of
    # one scenario print the same bytes (`simtrain run --json` writes them to stderr).
    TIMING = ("wall_time_s", "engine_run_s")

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("records",) + self.TIMING}
        return out

    def to_dict(self) -> dict[str, Any]:
        """What `simtrain run --json` prints: the metrics, breakdown, layout, memory,
        hotspots and warnings as plain data (no timeline records, no plan)."""
        out = self.to_json()  # without wall-clock figures: identical between runs
        extra = out.pop("extra", {})
        out.update({k: v for k, v in extra.items() if k != "plan" and not k.startswith("_")})
        return out

    @property
    def memory(self) -> dict[str, Any]:
        """The memory estimate (simtrain.workload.memory): peak_memory_gib, capacity_gib,
        fits_in_memory, per_stage, ..."""
        return self.extra.get("memory", {})

    @property
    def warnings(self) -> list[str]:
        """Placement warnings (TP/CP groups across NVLink domains)."""
        return self.extra.get("warnings", [])

    @property
    def hotspots(self) -> dict[str, Any]:
        return self.extra.get("hotspots", {})


def utilization(flops_per_token: float, tokens: float, step_time_s: float, gpus: int, peak_flops: float) -> float:
    """Achieved FLOP/s over the cluster's peak: flops_per_token * tokens / step / (gpus * peak).

    With flops_per_token = 6N this is seed 002's MFU: 6*7e9 * 2048*4096/12.7 / (256*312e12) = 35%.
    """
    return flops_per_token * tokens / step_time_s / (gpus * peak_flops)


def _part(r: Record) -> str | None:
    if r.stream != "main":
        return None
    if r.kind in ("F", "B", "W"):
        return "compute"
    if r.kind == "R":
        return "recompute"
    if r.kind == "opt":
        return "optimizer"
    return r.kind


_WORK = ("F", "B", "W", "R")  # main-stream work (hotspots.hotspots: the slowest device)
_PARTS = {"F": "compute", "B": "compute", "W": "compute", "R": "recompute", "opt": "optimizer"}  # others: their kind


def tail_parts(attributed, last: int | None, last_end: dict[int, float], step: float) -> dict[int, dict[str, float]]:
    """Each device's idle time at the end of the step (from `last_end[d]` to `step`), blamed
    on what the last device to finish was doing meanwhile (`tail_blame`). Devices that
    finish at the same instant (per-rank: every data-parallel replica) get the same blame,
    so it is worked out once per distinct finishing time; the dicts are shared, read-only."""
    blame: dict[float, dict[str, float]] = {}
    out = {}
    for d, t0 in last_end.items():
        tail = blame.get(t0)
        if tail is None:
            tail = blame[t0] = tail_blame(attributed, last, t0, step)
        out[d] = tail
    return out


def devices_by_stage(L, devices) -> dict[int, list[int]]:
    """Pipeline rank -> its devices in the order of `devices`, with one coordinate look-up
    per device (per-rank runs have thousands of devices and sixteen or more stages)."""
    out: dict[int, list[int]] = {}
    for d in devices:
        out.setdefault(L.coord(d).pp, []).append(d)
    return out


@dataclass
class MainStreams:
    """What `summarize` worked out of the main streams that the hotspots need too (each
    pass over millions of records done once): the attributed timeline (each device's
    records in record order and the attributed pieces), each device's work seconds (F, B,
    W, R added in record order) and its last record's end."""

    timeline: Any  # simtrain.analysis.attribution._Timeline
    work: dict[int, float]
    last_end: dict[int, float]

    def records(self, dev: int) -> list[Record]:
        """`dev`'s attributed main-stream records in record order (a new list)."""
        return self.timeline.attributed(dev)


def summarize(plan: Plan, records: list[Record]) -> Result:
    return summarize_main(plan, records)[0]


def summarize_main(plan: Plan, records: list[Record]) -> tuple[Result, MainStreams]:
    """`summarize`, with what it worked out of the main streams for the hotspots."""
    devices = plan.simulated
    end = max(map(_END, records), default=0.0)
    step = end
    records, attributed = attribute_waits(plan, records)
    per_dev: dict[int, dict[str, float]] = {d: defaultdict(float) for d in devices}
    last_end: dict[int, float] = defaultdict(float)
    parts = _PARTS
    # each device's F, B, W and R seconds, added in record order (hotspots' slowest device:
    # worked out here, where every record is visited anyway)
    work: dict[int, float] = {}
    # (_part inlined, the records unpacked rather than read by attribute: a record at a time adds up)
    for dev, stream, kind, _, start, end, _, _, _ in records:
        if stream != "main":
            continue
        per_dev[dev][parts.get(kind, kind)] += end - start
        if end > last_end[dev]:
            last_end[dev] = end
        if kind in _WORK:
            work[dev] = work.get(dev, 0.0) + (end - start)
    last = max(devices, key=lambda d: (last_end[d], -d)) if devices else None
    for d, tail in tail_parts(attributed, last, {d: last_end[d] for d in devices}, step).items():
        for part, sec in tail.items():  # idle while other stages finish
            per_dev[d][part] += sec
    if plan.scenario.engine.comm != "free" and devices:
        free_step = free_comm_step(plan, records, attributed.by_dev)
        for d in devices:
            busy = per_dev[d]["compute"] + per_dev[d]["recompute"] + per_dev[d]["optimizer"]
            bound_bubble(per_dev[d], free_step - busy)
    # each simulated device stands for its class (plan.classes): the mean over all devices
    weight = {d: plan.classes.size(d) for d in devices}
    n = sum(weight.values())
    breakdown = {p: sum(per_dev[d][p] * weight[d] for d in devices) / n for p in PARTS}
    L = plan.layout
    per_stage = []
    by_stage = devices_by_stage(L, devices)
    for pr in range(L.pp):
        devs = by_stage.get(pr, [])
        w = sum(weight[d] for d in devs)
        per_stage.append({p: sum(per_dev[d][p] * weight[d] for d in devs) / max(w, 1) for p in PARTS})
    tokens = plan.tokens_per_step
    peak = plan.device.peak_flops
    model_flops = plan.model.model_flops_per_token * tokens
    # recomputation FLOPs per step: every replica recomputes every layer of every micro-batch
    recompute_flops = sum(st.recompute_flops for st in plan.stages) * L.microbatches * L.dp * L.tp * L.cp
    mfu = utilization(plan.model.model_flops_per_token, tokens, step, plan.num_gpus, peak) if step > 0 else 0.0
    hfu = mfu + (recompute_flops / (step * plan.num_gpus * peak) if step > 0 else 0.0)
    bubble = breakdown["bubble"] / step if step > 0 else 0.0
    s = plan.scenario
    return Result(
        scenario=s.name,
        step_time_s=step,
        mfu=mfu,
        hfu=hfu,
        tflops_per_gpu=model_flops / step / plan.num_gpus / 1e12 if step > 0 else 0.0,
        tokens_per_s=tokens / step if step > 0 else 0.0,
        bubble_fraction=bubble,
        model_flops_per_token=plan.model.model_flops_per_token,
        flops_formula=plan.model.formula,
        num_gpus=plan.num_gpus,
        breakdown=breakdown,
        per_stage=per_stage,
        layout=dict(tp=L.tp, cp=L.cp, pp=L.pp, dp=L.dp, vp=L.vp, micro_batch=L.micro_batch,
                    global_batch=L.global_batch, microbatches_per_replica=L.microbatches,
                    seq_len=s.training.seq_len, mode=s.engine.mode, classes=len(devices)),
        schedule=plan.schedule.name,
        schedule_params=dict(plan.schedule_params),
        device=plan.device.name,
        params=plan.model.params,
        records=records,
        extra=_mfu_basis(plan, mfu),
    ), MainStreams(attributed, work, {d: last_end[d] for d in attributed.by_dev})


def _mfu_basis(plan: Plan, mfu: float) -> dict[str, Any]:
    dev = plan.device
    out: dict[str, Any] = {"mfu_basis": f"dense BF16 peak, {dev.peak_flops / 1e12:,.0f} TFLOP/s per {dev.name}"}
    if plan.scenario.training.precision == "fp8" and dev.peak_fp8_flops > 0:
        out["mfu_fp8_peak"] = mfu * dev.peak_flops / dev.peak_fp8_flops
        recipe = plan.scenario.training.fp8_recipe
        out["mfu_basis"] += (f" (FP8 GEMMs, {recipe} scaling; against the dense FP8 peak, "
                             f"{dev.peak_fp8_flops / 1e12:,.0f}: mfu_fp8_peak)")
    return out
