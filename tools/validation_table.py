"""Markdown table of a `simtrain validate --json` run, one row per source, for README.md.

    simtrain validate --json --quiet > /tmp/v.json
    python tools/validation_table.py /tmp/v.json

Columns: cases, zero-shot MAPE and mean signed error (catalog stacks; fitted rows left
out), calibrated MAPE (each source's stack fitted on one of its rows, that row left out)
and leave-one-source-out MAPE (constants from the other sources only). The last lines give
the MAPE over all rows and the mean of the per-source MAPEs, with and without the sources
named by --known-gap.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def _errors(cases: list[dict], excluded: set[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for c in cases:
        if c.get("status") != "ok" or not c.get("comparisons") or c.get("fitted") or c["case"] in excluded:
            continue
        comp = c["comparisons"][0]
        # one sign for every source: negative = simulated too fast (a throughput that comes
        # out high is a step that comes out short)
        sign = 1 if comp["metric"] == "step_time_s" else -1
        out.setdefault(c["group"], []).append(sign * 100 * comp["error"])
    return out


def _mode_errors(report: dict, mode: str) -> dict[str, list[float]]:
    m = report.get("modes", {}).get(mode)
    if not m:
        return {}
    out: dict[str, list[float]] = {}
    for c in m.get("cases", []):
        if c.get("excluded_as_fit") or c.get("error") is None:
            continue
        out.setdefault(c["group"], []).append(100 * c["error"])
    return out


def _mape(v: list[float]) -> float:
    return statistics.mean(abs(x) for x in v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="JSON written by simtrain validate --json")
    ap.add_argument("--known-gap", action="append", default=[],
                    help="source group left out of the second summary line (repeatable)")
    a = ap.parse_args(argv)
    report = json.load(open(a.report))
    zero = _errors(report["cases"], set())  # the run's own cases are the zero-shot reading
    cal, loso = _mode_errors(report, "calibrated"), _mode_errors(report, "loso")
    print("| source | cases | zero-shot MAPE (bias: − = simulated too fast) | calibrated | leave-one-source-out |")
    print("|---|---|---|---|---|")
    for g, v in zero.items():
        cell = lambda d: f"{_mape(d[g]):.1f}% ({len(d[g])})" if d.get(g) else "–"
        print(f"| {g} | {len(v)} | {_mape(v):.1f}% ({statistics.mean(v):+.1f}%) | {cell(cal)} | {cell(loso)} |")
    for label, keep in (("all sources", lambda g: True), ("without " + ", ".join(a.known_gap),
                                                          lambda g: g not in a.known_gap)):
        if label.startswith("without") and not a.known_gap:
            continue
        parts = []
        for name, d in (("zero-shot", zero), ("calibrated", cal), ("leave-one-source-out", loso)):
            groups = {g: v for g, v in d.items() if keep(g)}
            if not groups:
                continue
            rows = [x for v in groups.values() for x in v]
            parts.append(f"{name} {_mape(rows):.1f}% over {len(rows)} rows, "
                         f"{statistics.mean(_mape(v) for v in groups.values()):.1f}% mean of {len(groups)} sources")
        print(f"\n{label}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
