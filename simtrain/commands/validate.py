"""`simtrain validate`: simulate the shipped reference cases and compare with publications."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "validate", help="compare simulated runs with published measurements",
        description="Simulate every reference case (Llama 3 Table 4, Megatron-LM SC21 Table 1, ...) and print "
        "published vs simulated TFLOP/s per GPU on each source's own FLOPs basis (model FLOPs/MFU, or "
        "Megatron's formula that counts recomputation/HFU), the error, and the mean absolute percentage "
        "error per source. Cases the simulator cannot run yet are listed as skipped with the reason.",
    )
    p.add_argument("--only", metavar="PATTERN",
                   help="run only cases whose name (glob, or substring of name or source group) matches, e.g. llama3 "
                        "or 'megatron-*-1*'; extended sweeps run only when selected, e.g. --only 'Aleph Alpha'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--reference", metavar="FILE", help="reference cases file (default: the shipped simtrain/data/reference.toml)")
    p.add_argument("--max-error", type=float, metavar="PCT",
                   help="exit with status 1 if any source's mean absolute percentage error exceeds PCT")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--mode", default="all", metavar="MODES",
                   help="comma-separated readings: zero-shot (catalog stacks as shipped; rows a catalog constant was "
                        "fitted on are left out), calibrated (each source's stack fitted on one of its runs), loso "
                        "(each source predicted with constants fitted on the other sources); default all")
    p.add_argument("--list", action="store_true", help="list the reference cases and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from simtrain.analysis.report import dumps
    from simtrain.analysis.validation import load_reference, run_validation, select
    from simtrain.scenario.errors import SimtrainError

    if args.max_error is not None and not args.max_error >= 0:  # also refuses nan
        raise SimtrainError(f"--max-error {args.max_error}: must be zero or positive; give a percentage such as 15")
    from simtrain.analysis.validation import MODES

    modes = MODES if args.mode == "all" else tuple(m.strip() for m in args.mode.split(","))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SimtrainError(f"--mode {args.mode!r}: unknown reading {unknown[0]!r}; use all or a comma list of {', '.join(MODES)}")
    if "zero-shot" not in modes:
        modes = ("zero-shot",) + modes  # the other readings start from its results
    everything = load_reference(args.reference)
    cases = select(everything, args.only)
    if args.list:
        for c in cases:
            if c.expect_error:
                pub = "must be refused (inconsistent as printed)"
            elif c.tflops_per_gpu:
                pub = f"{c.tflops_per_gpu:g} TFLOP/s ({c.basis})"
            elif c.step_time_s:
                pub = f"step {c.step_time_s:g} s"
            else:
                pub = f"claim: {c.expect}"
            print(f"{c.name:<32} {c.group:<28} {pub}")
        left = [c for c in everything if c.extended and c not in cases]
        if left:
            groups = sorted({c.group for c in left})
            print(f"(+{len(left)} cases of extended sweeps, run only when selected: {'; '.join(groups)}; "
                  f"e.g. --only {groups[0].split(' (')[0]!r})")
        return 0

    def progress(i: int, n: int, case, result) -> None:
        if args.quiet:
            return
        if result is None:
            print(f"validate: [{i}/{n}] {case.name} ...", file=sys.stderr, end="", flush=True)
        else:
            print(f" {result.status} ({result.wall_s:.1f} s)", file=sys.stderr, flush=True)

    def mode_progress(text: str) -> None:
        if not args.quiet:
            print(f"validate: {text}", file=sys.stderr, flush=True)

    report = run_validation(cases, progress, modes=modes, mode_progress=mode_progress)
    print(dumps(report.to_json()) if args.json else report.text())
    if report.has_errors:
        return 1
    if args.max_error is not None:
        worst = {g: m for g, (m, _) in report.mape_by_group().items() if m > args.max_error}
        if worst:
            g, m = max(worst.items(), key=lambda kv: kv[1])
            print(f"simtrain: validate: mean absolute error {m:.1f}% for {g} exceeds --max-error {args.max_error:g}%",
                  file=sys.stderr)
            return 1
    return 0
