"""The validation report: per source, published vs simulated with the error of each case,
and the mean absolute percentage error of each mode (simtrain.analysis.validation.modes):
zero-shot, calibrated on one run per source, and leave-one-source-out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from simtrain.analysis.validation.cases import ReferenceCase
from simtrain.analysis.validation.modes import ModeResults, summary
from simtrain.analysis.validation.runner import CaseResult, run_case


@dataclass(frozen=True)
class ValidationReport:
    results: tuple[CaseResult, ...]  # zero-shot
    modes: dict[str, ModeResults] = field(default_factory=dict, compare=False)

    def mape_by_group(self) -> dict[str, tuple[float, int]]:
        """Mean absolute percentage error of the primary metric per source group:
        group -> (MAPE in percent, number of cases that entered it)."""
        errors: dict[str, list[float]] = {}
        for r in self.results:
            c = r.primary
            if r.status in ("ok", "failed") and c is not None and not r.case.fitted:
                errors.setdefault(r.case.group, []).append(abs(c.error))
        return {g: (100 * sum(e) / len(e), len(e)) for g, e in errors.items()}

    @property
    def has_errors(self) -> bool:
        return any(r.status in ("error", "failed") for r in self.results)

    def to_json(self) -> dict[str, Any]:
        out = {
            "cases": [r.to_json() for r in self.results],
            "mape_percent": {g: {"mape": m, "cases": n} for g, (m, n) in self.mape_by_group().items()},
            "skipped": sum(r.status == "skipped" for r in self.results),
        }
        if self.modes:
            out["modes"] = summary(self.modes)
            for name, m in self.modes.items():
                if name != "zero-shot":
                    out["modes"][name]["cases"] = [
                        {"case": r.case.name, "group": r.case.group, "excluded_as_fit": m.excluded(r),
                         "error": r.primary.error if r.primary else None} for r in m.results]
        return out

    def text(self) -> str:
        lines = ["simtrain validate: published vs simulated, TFLOP/s per GPU on the source's FLOPs basis", ""]
        w = max(30, min(48, max((len(r.case.name) for r in self.results), default=30)))  # name column
        head = f"  {'case':<{w}} {'basis':<13} {'published':>10} {'simulated':>10} {'error':>8}   {'util pub/sim':>13}  {'step s':>7}  {'mem GiB':>8}"
        groups: dict[str, list[CaseResult]] = {}
        for r in self.results:
            groups.setdefault(r.case.group, []).append(r)
        mape = self.mape_by_group()
        for g, rs in groups.items():
            lines.append(f"{g}  ({rs[0].case.source})")
            lines.append(head)
            for r in rs:
                name = r.case.name[:w]
                c = r.primary
                if r.status in ("skipped", "error", "refused") or (r.status == "failed" and not r.simulated):
                    label = {"skipped": "skipped", "error": "ERROR", "refused": "refused as expected", "failed": "FAILED"}[r.status]
                    lines.append(f"  {name:<{w}} {label}: {r.reason}")
                    continue
                sim = r.simulated
                if "step_time_s" not in sim:  # a memory claim: estimated, not simulated
                    mark = "agrees" if r.status == "ok" else "FAILED"
                    lines.append(f"  {name:<{w}} memory {mark}: {r.reason}")
                    continue
                util = next((x for x in r.comparisons if x.metric in ("mfu", "hfu")), None)
                util_s = f"{util.metric.upper()} {100 * util.published:.0f}/{100 * util.simulated:.0f}%" if util else ""
                mem = sim["memory"]
                mem_s = f"{mem['peak_memory_gib']:.1f}" + ("" if mem["fits_in_memory"] else "!")
                if c is not None:
                    if r.case.fitted:
                        util_s = "FIT " + util_s
                    fmt = ".4g" if c.metric == "step_time_s" else ".1f"  # seconds: short steps keep their digits
                    lines.append(f"  {name:<{w}} {r.case.basis:<13} {c.published:>10{fmt}} {c.simulated:>10{fmt}} "
                                 f"{100 * c.error:>+7.1f}%   {util_s:>13}  {sim['step_time_s']:>7.2f}  {mem_s:>8}")
                else:
                    lines.append(f"  {name:<{w}} {r.case.basis:<13} {'—':>10} {sim['tflops_per_gpu']:>10.1f} {'':>8}   "
                                 f"{'MFU ' + format(100 * sim['mfu'], '.0f') + '%':>13}  {sim['step_time_s']:>7.2f}  {mem_s:>8}")
                if r.reason:
                    lines.append(f"  {'':<{w}} {'FAILED: ' if r.status == 'failed' else ''}{r.reason}")
            if g in mape:
                m, n = mape[g]
                fits = sum(bool(r.case.fitted) for r in rs)
                lines.append(f"  zero-shot mean absolute error: {m:.1f}% over {n} prediction{'s' if n != 1 else ''}"
                             + (f" ({fits} fitted row{'s' if fits != 1 else ''} left out)" if fits else ""))
            lines += _mode_lines(self.modes, g)
            lines.append("")
        skipped = sum(r.status == "skipped" for r in self.results)
        lines.append(f"{len(self.results)} cases: {sum(r.status == 'ok' for r in self.results)} compared, "
                     f"{skipped} skipped, {sum(r.status == 'refused' for r in self.results)} refused as expected, "
                     f"{sum(r.status in ('failed', 'error') for r in self.results)} failed"
                     + ("   (! = memory model says it does not fit)" if any(
                         r.simulated and "step_time_s" in r.simulated and not r.simulated["memory"]["fits_in_memory"]
                         for r in self.results) else ""))
        if self.modes:
            lines += [""] + _summary_lines(self.modes)
        return "\n".join(lines)


def run_validation(cases: tuple[ReferenceCase, ...],
                   progress: Callable[[int, int, ReferenceCase, CaseResult | None], None] | None = None,
                   overrides: tuple[str, ...] = (), modes: tuple[str, ...] = ("zero-shot",),
                   mode_progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Run `cases` in order; `progress(i, n, case, result)` is called before (result None)
    and after each case. `modes` beyond zero-shot (calibrated, loso) run afterwards."""
    from simtrain.analysis.validation.modes import run_modes

    results = []
    for i, case in enumerate(cases, 1):
        if progress:
            progress(i, len(cases), case, None)
        r = run_case(case, overrides)
        results.append(r)
        if progress:
            progress(i, len(cases), case, r)
    extra = run_modes(cases, results, modes, mode_progress)
    return ValidationReport(tuple(results), extra)



def _mode_lines(modes: dict[str, ModeResults], group: str) -> list[str]:
    from simtrain.analysis.calibrate import implausible

    out = []
    cal = modes.get("calibrated")
    if cal and group in cal.fits:
        f = cal.fits[group]
        per = cal.mape_by_group().get(group)
        out.append(f"  calibrated on {f.case} (stack.sustained_fraction -> {f.fraction:.3f}, x{f.factor:.3f}"
                   + (", at its bound" if f.at_bound else "")
                   + (", beyond any catalog stack: that run's gap is not in compute" if implausible(f.factor) else "") + "): "
                   + (f"{per[0]:.1f}% over {per[1]} prediction{'s' if per[1] != 1 else ''}" if per else "no other runs"))
    loso = modes.get("loso")
    if loso and group in loso.fraction_used:
        per = loso.mape_by_group().get(group)
        if per:
            out.append(f"  leave-one-source-out (fraction {loso.fraction_used[group]:.3f}, the median fitted on the other "
                       f"sources): {per[0]:.1f}% over {per[1]}")
    return out


def _summary_lines(modes: dict[str, ModeResults]) -> list[str]:
    s = summary(modes)
    lines = ["mean absolute error of the predictions, per mode (each source weighs the same; over all rows):"]
    names = {"zero-shot": "zero-shot (catalog stacks, fitted rows left out)",
             "calibrated": "calibrated on one run per source",
             "loso": "leave-one-source-out"}
    for mode, v in s.items():
        if v["mean_of_sources"] is None:
            continue
        lines.append(f"  {names[mode]:<50} {v['mean_of_sources']:5.1f}%   ({v['over_rows']:.1f}% over {v['rows']} rows)")
    return lines
