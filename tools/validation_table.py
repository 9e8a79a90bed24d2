"""Markdown table of a `simtrain validate --json` run, one row per source, for README.md.

    simtrain validate --json --quiet > /tmp/v.json
    python tools/validation_table.py /tmp/v.json

It formats the per-mode summary `validate --json` already computes (`modes`: per source the
MAPE, the number of predictions and the mean signed step error, negative = simulated too
fast; fitted rows left out): zero-shot, calibrated and leave-one-source-out. The last lines
give the MAPE over all rows and the mean of the per-source MAPEs, with and without the
sources named by --known-gap, and an estimate of how much the calibrated reading depends on
which row a source is calibrated on: each row in turn as the calibration row, the others'
zero-shot step errors rescaled by its factor (one factor on the whole step, which the fitted
sustained fraction only approximates: communication does not scale with it).
"""

from __future__ import annotations

import argparse
import json
import sys

MODES = (("zero-shot", "zero-shot"), ("calibrated", "calibrated"), ("loso", "leave-one-source-out"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="JSON written by simtrain validate --json")
    ap.add_argument("--known-gap", action="append", default=[],
                    help="source group left out of the second summary line (repeatable)")
    a = ap.parse_args(argv)
    report = json.load(open(a.report))
    modes = report.get("modes") or {}
    if "zero-shot" not in modes:
        raise SystemExit(f"{a.report}: no per-mode summary; run simtrain validate --json (any --mode)")
    src = {m: modes[m]["by_source"] for m, _ in MODES if m in modes}

    def cell(mode: str, g: str) -> str:
        v = src.get(mode, {}).get(g)
        return f"{v['mape']:.1f}% ({v['cases']})" if v else "–"

    print("| source | cases | zero-shot MAPE (bias: − = simulated too fast) | calibrated | leave-one-source-out |")
    print("|---|---|---|---|---|")
    # every source, in the order of the cases; one whose rows are all fits (a catalog
    # constant fitted on them) has no zero-shot prediction: say so, with its fit residual
    fitted: dict[str, list[float]] = {}
    order: list[str] = []
    for c in report.get("cases", []):
        g = c.get("group", "")
        if g and g not in order:
            order.append(g)
        if c.get("fitted") and c.get("comparisons"):
            fitted.setdefault(g, []).append(abs(c["comparisons"][0]["error"]) * 100)
    for g in [g for g in order if g in src["zero-shot"] or g in fitted]:
        v = src["zero-shot"].get(g)
        zs = (f"{v['mape']:.1f}% ({v['bias']:+.1f}%)" if v else
              f"fit: all {len(fitted[g])} rows ({sum(fitted[g]) / len(fitted[g]):.1f}% residual)")
        n = v["cases"] if v else len(fitted[g])
        print(f"| {g} | {n} | {zs} | {cell('calibrated', g)} | {cell('loso', g)} |")
    for label, gap in (("all sources", set()), ("without " + ", ".join(a.known_gap), set(a.known_gap))):
        if gap or label == "all sources":
            parts = []
            for mode, name in MODES:
                groups = [v for g, v in src.get(mode, {}).items() if g not in gap]
                if groups:
                    rows = sum(v["cases"] for v in groups)
                    over = sum(v["mape"] * v["cases"] for v in groups) / rows
                    mean = sum(v["mape"] for v in groups) / len(groups)
                    parts.append(f"{name} {over:.1f}% over {rows} rows, {mean:.1f}% mean of {len(groups)} sources")
            print(f"\n{label}: " + "; ".join(parts))
    anyrow = any_row_calibration(report)
    if anyrow:
        means, bests = zip(*anyrow.values())
        print(f"\ncalibrated on any one row (estimate): {sum(means) / len(means):.1f}% mean over the choice of row, "
              f"{sum(bests) / len(bests):.1f}% with each source's best row, mean of {len(anyrow)} sources")
    return 0


def any_row_calibration(report: dict) -> dict[str, tuple[float, float]]:
    """Per source with 2+ predictions: (mean over calibration rows, best calibration row) of the
    other rows' MAPE, each row's step error e rescaled as (1 + e) / (1 + e_cal) - 1."""
    errs: dict[str, list[float]] = {}
    for c in report.get("cases", []):
        if c.get("status") != "ok" or c.get("fitted") or not c.get("comparisons"):
            continue
        comps = {x["metric"]: x for x in c["comparisons"]}
        x = comps.get("step_time_s") if c.get("basis") == "step" else comps.get("tflops_per_gpu") or comps.get("step_time_s")
        if x is None:
            continue
        e = x["error"] if x["metric"] == "step_time_s" else 1 / (1 + x["error"]) - 1  # as a step error
        errs.setdefault(c["group"], []).append(e)
    out = {}
    for g, es in errs.items():
        if len(es) < 2:
            continue
        per = [100 * sum(abs((1 + e) / (1 + ec) - 1) for j, e in enumerate(es) if j != i) / (len(es) - 1)
               for i, ec in enumerate(es)]
        out[g] = (sum(per) / len(per), min(per))
    return out


if __name__ == "__main__":
    sys.exit(main())
