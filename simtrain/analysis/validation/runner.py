"""Simulate one reference case and compare it with its published measurement, on the
source's own basis (simtrain.analysis.validation.cases). Cases without a published
measurement can carry a qualitative claim (`expect = "communication-bound"` or
`"compute-bound"`), checked against the simulated breakdown; cases with `expect_error`
must be refused with a message containing that text. A case the simulator cannot run
(a missing feature, an unknown topology) is reported as skipped with the simulator's own
one-line reason; it never stops the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from simtrain.analysis.validation.cases import ReferenceCase, case_scenario
from simtrain.scenario.errors import SimtrainError

# A step is called communication-bound when its exposed communication (TP + CP + PP + DP
# waits) takes longer than its compute: the roofline sense of the seed's claims (the step
# would speed up more from faster links than from faster chips).


@dataclass(frozen=True)
class Comparison:
    metric: str  # "tflops_per_gpu", "mfu", "hfu" or "step_time_s"
    published: float
    simulated: float

    @property
    def error(self) -> float:
        """Signed relative error (simulated - published) / published."""
        return (self.simulated - self.published) / self.published


@dataclass(frozen=True)
class CaseResult:
    case: ReferenceCase
    status: str  # ok | skipped | refused (as expected) | failed (claim/refusal not met) | error (a bug)
    reason: str = ""
    comparisons: tuple[Comparison, ...] = ()
    simulated: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def primary(self) -> Comparison | None:
        """The comparison that enters the per-source error: TFLOP/s on the source's basis,
        else step time."""
        order = ("step_time_s",) if self.case.basis == "step" else ("tflops_per_gpu", "step_time_s")
        for metric in order:
            for c in self.comparisons:
                if c.metric == metric:
                    return c
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "scenario": self.case.scenario,
            "group": self.case.group,
            "source": self.case.source,
            "calibration": self.case.calibration,
            "basis": self.case.basis,
            "fitted": self.case.fitted,
            "status": self.status,
            "reason": self.reason,
            "comparisons": [
                {"metric": c.metric, "published": c.published, "simulated": c.simulated, "error": c.error}
                for c in self.comparisons
            ],
            "simulated": self.simulated,
        }  # wall_s (run to run different) goes to stderr with the progress line


MEMORY_CLAIMS = ("out-of-memory", "fits-in-memory")


def _memory_claim(case: ReferenceCase, scenario, t0: float) -> CaseResult:
    """A run that was published as out of memory (or as having run): the memory estimate,
    without simulating, must agree."""
    from simtrain.engine.plan import make_plan
    from simtrain.workload.memory import estimate

    mem = estimate(make_plan(scenario))
    got = "fits-in-memory" if mem.fits_in_memory else "out-of-memory"
    reason = f"claim {case.expect}; estimate {mem.peak_memory_gib:.1f} of {mem.capacity_gib:.1f} GiB: {got}"
    simulated = {"memory": {"peak_memory_gib": mem.peak_memory_gib, "capacity_gib": mem.capacity_gib,
                            "fits_in_memory": mem.fits_in_memory}}
    return CaseResult(case, "ok" if got == case.expect else "failed", reason, (), simulated, time.perf_counter() - t0)


def _comm_share(breakdown: dict[str, float], step: float) -> float:
    return sum(breakdown.get(k, 0.0) for k in ("tp", "cp", "pp", "dp")) / step if step > 0 else 0.0


def run_case(case: ReferenceCase, overrides: tuple[str, ...] = ()) -> CaseResult:
    """Simulate one reference case; SimtrainErrors become `skipped` (or `refused`)."""
    from simtrain.analysis.run import simulate
    from simtrain.scenario.layout import make_layout
    from simtrain.workload.flops import megatron_flops_per_token
    from simtrain.workload.memory import estimate

    t0 = time.perf_counter()
    try:
        scenario = case_scenario(case, overrides)
        make_layout(scenario)  # layout consistency first: it is the most basic refusal
        if case.expect in MEMORY_CLAIMS:
            return _memory_claim(case, scenario, t0)
        result = simulate(scenario)
    except SimtrainError as e:
        msg = str(e).splitlines()[0]
        wall = time.perf_counter() - t0
        if case.expect_error:
            ok = case.expect_error in msg
            return CaseResult(case, "refused" if ok else "failed",
                              msg if ok else f"expected a refusal containing {case.expect_error!r}, got: {msg}", wall_s=wall)
        return CaseResult(case, "skipped", msg, wall_s=wall)
    except Exception as e:  # a bug in the simulator: report it, keep going
        return CaseResult(case, "error", f"{type(e).__name__}: {e}", wall_s=time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    if case.expect_error:
        return CaseResult(case, "failed", f"simulated, but should have been refused ({case.expect_error!r})", wall_s=wall)

    plan = result.extra["plan"]
    step = result.step_time_s
    peak = plan.device.peak_flops
    if case.basis == "megatron-hfu":
        flops = megatron_flops_per_token(scenario.model, scenario.training.seq_len) * plan.tokens_per_step
        tflops = flops / step / plan.num_gpus / 1e12
        util = {"hfu": tflops * 1e12 / peak}
    else:
        tflops = result.tflops_per_gpu
        util = {"mfu": result.mfu}
    mem = estimate(plan)
    simulated = {
        "step_time_s": step,
        "tflops_per_gpu": tflops,
        "mfu": result.mfu,
        "hfu": result.hfu,
        "basis": case.basis,
        "bubble_fraction": result.bubble_fraction,
        "exposed_comm_fraction": _comm_share(result.breakdown, step),
        "breakdown": dict(result.breakdown),
        "memory": {"peak_memory_gib": mem.peak_memory_gib, "capacity_gib": mem.capacity_gib,
                   "fits_in_memory": mem.fits_in_memory},
    }
    comps = []
    if case.step_time_s:
        comps.append(Comparison("step_time_s", case.step_time_s, step))
    if case.tflops_per_gpu:
        comps.append(Comparison("tflops_per_gpu", case.tflops_per_gpu, tflops))
    for key, value in util.items():
        published = getattr(case, key)
        if published:
            comps.append(Comparison(key, published, value))
    status, reason = "ok", ""
    if case.expect:
        share = simulated["exposed_comm_fraction"]
        compute_share = simulated["breakdown"]["compute"] / step if step else 0.0
        got = "communication-bound" if share > compute_share else "compute-bound"
        reason = (f"claim {case.expect}; simulated {got} (exposed communication {100 * share:.0f}%, "
                  f"compute {100 * compute_share:.0f}% of the step)")
        if got != case.expect:
            status = "failed"
    if not mem.fits_in_memory:
        reason = (reason + "; " if reason else "") + (
            f"memory model says it does not fit ({mem.peak_memory_gib:.1f} of {mem.capacity_gib:.1f} GiB), but it ran")
    return CaseResult(case, status, reason, tuple(comps), simulated, wall)
