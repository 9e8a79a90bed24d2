"""Three ways to read a validation, so that a figure counts as a prediction only when no
constant was fitted on it:

- zero-shot: the catalog stacks as shipped. A row a catalog constant was fitted on
  (`fitted`) is reported as a fit and left out of the error.
- calibrated: per source, the stack's sustained fraction is fitted on one run of that
  source (its `calibration_row`) and the source's other runs are predicted with it (each
  row's own stack value times the same factor).
- leave-one-source-out: each source is predicted with the median of the sustained
  fractions fitted on every *other* source: constants from the other sources only.
The one free constant is `stack.sustained_fraction` (simtrain.analysis.calibrate fits it).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from simtrain.analysis.validation.cases import ReferenceCase, case_scenario
from simtrain.analysis.validation.runner import CaseResult, run_case

MODES = ("zero-shot", "calibrated", "loso")


def target_step(case: ReferenceCase, zero: CaseResult) -> float | None:
    """The step time the published figure implies: the published step, or the simulated
    step scaled by simulated/published throughput on the source's basis."""
    c = zero.primary
    if c is None or zero.status != "ok":
        return None
    if c.metric == "step_time_s":
        return c.published
    return zero.simulated["step_time_s"] * c.simulated / c.published


def row_fraction(case: ReferenceCase) -> float:
    return case_scenario(case).stack.sustained_fraction


@dataclass
class SourceFit:
    group: str
    case: str  # the calibration row
    fraction: float  # absolute stack.sustained_fraction fitted on it
    factor: float  # fitted / the row's catalog value
    residual: float  # relative step-time error left at the fit
    at_bound: bool = False


@dataclass
class ModeResults:
    mode: str
    results: list[CaseResult] = field(default_factory=list)
    fits: dict[str, SourceFit] = field(default_factory=dict)
    fraction_used: dict[str, float] = field(default_factory=dict)  # loso: group -> fraction

    def excluded(self, r: CaseResult) -> bool:
        """Rows that are fits, not predictions, in this mode."""
        if self.mode == "zero-shot":
            return bool(r.case.fitted)
        if self.mode == "calibrated":
            fit = self.fits.get(r.case.group)
            return fit is not None and fit.case == r.case.name
        return False

    def errors_by_group(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for r in self.results:
            c = r.primary
            if r.status in ("ok", "failed") and c is not None and not self.excluded(r):
                out.setdefault(r.case.group, []).append(c.error)
        return out

    def mape_by_group(self) -> dict[str, tuple[float, int]]:
        return {g: (100 * sum(map(abs, e)) / len(e), len(e)) for g, e in self.errors_by_group().items()}

    def bias_by_group(self) -> dict[str, float]:
        """Mean signed error of the step per source, in per cent, one sign for every source:
        negative = simulated too fast (a throughput error counts with its sign flipped)."""
        out: dict[str, list[float]] = {}
        for r in self.results:
            c = r.primary
            if r.status in ("ok", "failed") and c is not None and not self.excluded(r):
                out.setdefault(r.case.group, []).append(c.error if c.metric == "step_time_s" else -c.error)
        return {g: 100 * sum(e) / len(e) for g, e in out.items()}


def calibrate_sources(cases: tuple[ReferenceCase, ...], zero: dict[str, CaseResult],
                      progress: Callable[[str], None] | None = None) -> dict[str, SourceFit]:
    """Fit the sustained fraction on each source's calibration row (the flagged one, else
    its first row with a measurement)."""
    from simtrain.analysis.calibrate import fit_fraction

    fits: dict[str, SourceFit] = {}
    groups: dict[str, list[ReferenceCase]] = {}
    for c in cases:
        if c.has_measurement and not c.expect_error:
            groups.setdefault(c.group, []).append(c)
    for g, members in groups.items():
        chosen = next((c for c in members if c.calibration_row), members[0])
        target = target_step(chosen, zero[chosen.name])
        if target is None:
            continue
        if progress:
            progress(f"calibrating {g} on {chosen.name}")
        base = row_fraction(chosen)
        fit = fit_fraction(lambda ov, c=chosen: case_scenario(c, ov), target, start=base)
        fits[g] = SourceFit(g, chosen.name, fit.fraction, fit.fraction / base, fit.residual, fit.at_bound)
    return fits


def _run(cases, overrides_for, progress, label) -> list[CaseResult]:
    out = []
    for i, c in enumerate(cases, 1):
        if progress:
            progress(f"{label} [{i}/{len(cases)}] {c.name}")
        out.append(run_case(c, overrides_for(c)))
    return out


def run_modes(cases: tuple[ReferenceCase, ...], zero_results: list[CaseResult], modes: tuple[str, ...],
              progress: Callable[[str], None] | None = None) -> dict[str, ModeResults]:
    zero = ModeResults("zero-shot", list(zero_results))
    out = {"zero-shot": zero}
    if not set(modes) & {"calibrated", "loso"}:
        return out
    by_name = {r.case.name: r for r in zero_results}
    fits = calibrate_sources(cases, by_name, progress)
    measured = tuple(c for c in cases if c.has_measurement and not c.expect_error)
    if "calibrated" in modes:
        def cal(c: ReferenceCase) -> tuple[str, ...]:
            f = fits.get(c.group)
            return (f"stack.sustained_fraction={row_fraction(c) * f.factor!r}",) if f else ()
        out["calibrated"] = ModeResults("calibrated", _run(measured, cal, progress, "calibrated"), fits)
    if "loso" in modes:
        used = {}
        for g in {c.group for c in measured}:
            others = [f.fraction for h, f in fits.items() if h != g]
            if others:
                used[g] = statistics.median(others)
        out["loso"] = ModeResults("loso", _run(measured, lambda c: (f"stack.sustained_fraction={used[c.group]!r}",)
                                                if c.group in used else (), progress, "leave-one-source-out"),
                                  fits, used)
    return out


def summary(modes: dict[str, ModeResults]) -> dict[str, Any]:
    """Per source and overall (mean of the sources' MAPEs, and over all rows) for each mode."""
    out: dict[str, Any] = {}
    for name, m in modes.items():
        per, bias = m.mape_by_group(), m.bias_by_group()
        rows = [abs(e) for errs in m.errors_by_group().values() for e in errs]
        out[name] = {
            "by_source": {g: {"mape": v, "cases": n, "bias": bias[g]} for g, (v, n) in per.items()},
            "mean_of_sources": sum(v for v, _ in per.values()) / len(per) if per else None,
            "over_rows": 100 * sum(rows) / len(rows) if rows else None,
            "rows": len(rows),
        }
        if name != "zero-shot":
            out[name]["fits"] = {g: {"case": f.case, "sustained_fraction": f.fraction, "factor": f.factor,
                                     "residual": f.residual, "at_bound": f.at_bound} for g, f in m.fits.items()}
        if m.fraction_used:
            out[name]["fraction_used"] = m.fraction_used
    return out
