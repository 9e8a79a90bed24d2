"""`simtrain compare`: two steps side by side, with the MFU difference attributed to causes."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare", help="compare two scenarios (or one scenario and a variant) and explain the MFU difference",
        description="Simulate A and B, show both step breakdowns side by side and attribute MFU(B) - MFU(A) "
        "exactly to pipeline bubble, exposed TP/CP/PP/DP communication, compute efficiency, "
        "recomputation and the optimizer step. B defaults to A, so a variant is A plus --b-set overrides, e.g. "
        "`simtrain compare llama3-405b-8k --b-set cluster.gpus=16384 --b-set parallel.dp=128`.",
    )
    p.add_argument("a", metavar="A", help="scenario A: a TOML path or a name in scenarios/")
    p.add_argument("b", metavar="B", nargs="?", default=None, help="scenario B (default: A, changed by --b-set)")
    p.add_argument("--set", dest="both", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field in both A and B (repeatable)")
    p.add_argument("--a-set", dest="a_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field in A only (repeatable)")
    p.add_argument("--b-set", dest="b_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field in B only (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def _label(name: str, overrides: list[str]) -> str:
    return " ".join([name] + [f"--set {o}" for o in overrides])


def run(args: argparse.Namespace) -> int:
    from simtrain.analysis.compare import compare_results
    from simtrain.analysis.report import dumps
    from simtrain.analysis.run import simulate_plan
    from simtrain.engine.plan import check_supported, make_plan
    from simtrain.scenario.config import load_scenario
    from simtrain.scenario.errors import SimtrainError

    b_name = args.b or args.a
    over_a, over_b = args.both + args.a_set, args.both + args.b_set
    # A is loaded and planned first (every check that can refuse it): a missing scenario or a
    # bad --set is reported as such, not as "A and B are the same"
    plan_a = make_plan(load_scenario(args.a, over_a))
    if b_name == args.a and over_a == over_b:
        raise SimtrainError(
            f"compare {args.a!r}: A and B are the same; give a second scenario or a variant with --b-set, "
            "e.g. --b-set parallel.dp=128"
        )
    # Both scenarios are loaded and planned before either is simulated, so a bad B is refused
    # at once with one line and no progress text.
    plans = [plan_a, make_plan(load_scenario(b_name, over_b))]
    for plan in plans:
        check_supported(plan.scenario)
    results = []
    for which, plan in zip("AB", plans):
        if sys.stderr.isatty():
            print(f"\rcompare: simulating {which} ...", file=sys.stderr, end="", flush=True)
        try:
            results.append(simulate_plan(plan))
        finally:
            if sys.stderr.isatty():
                print("\r\033[K", file=sys.stderr, end="", flush=True)
    cmp = compare_results(_label(results[0].scenario, over_a), results[0], _label(results[1].scenario, over_b), results[1])
    print(dumps(cmp.to_json()) if args.json else cmp.text())
    return 0
