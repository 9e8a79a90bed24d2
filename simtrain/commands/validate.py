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
                   help="run only cases whose name (glob, or substring of name or source group) matches, e.g. llama3 or 'megatron-*-1*'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--reference", metavar="FILE", help="reference cases file (default: the shipped simtrain/data/reference.toml)")
    p.add_argument("--max-error", type=float, metavar="PCT",
                   help="exit with status 1 if any source's mean absolute percentage error exceeds PCT")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--list", action="store_true", help="list the reference cases and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from simtrain.analysis.report import dumps
    from simtrain.analysis.validate import load_reference, run_validation, select
    from simtrain.scenario.errors import SimtrainError

    if args.max_error is not None and not args.max_error >= 0:  # also refuses nan
        raise SimtrainError(f"--max-error {args.max_error}: must be zero or positive; give a percentage such as 15")
    cases = select(load_reference(args.reference), args.only)
    if args.list:
        for c in cases:
            if c.expect_error:
                pub = "must be refused (inconsistent as printed)"
            elif c.tflops_per_gpu:
                pub = f"{c.tflops_per_gpu:g} TFLOP/s ({c.basis})"
            else:
                pub = f"claim: {c.expect}"
            print(f"{c.name:<32} {c.group:<28} {pub}")
        return 0

    def progress(i: int, n: int, case, result) -> None:
        if args.quiet:
            return
        if result is None:
            print(f"validate: [{i}/{n}] {case.name} ...", file=sys.stderr, end="", flush=True)
        else:
            print(f" {result.status} ({result.wall_s:.1f} s)", file=sys.stderr, flush=True)

    report = run_validation(cases, progress)
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
