"""`simtrain schedules`: compare pipeline schedules across micro-batch counts."""

from __future__ import annotations

import argparse
import json
import sys

from simtrain.commands import check_outputs
from simtrain.scenario.errors import SimtrainError


def _int_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            lo, _, hi = part.partition(":")
            if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
                raise argparse.ArgumentTypeError(f"{part!r}: expected a range FIRST:LAST with FIRST <= LAST, like 8:64")
            out += list(range(int(lo), int(hi) + 1))
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"{part!r}: expected positive whole numbers like 8,16,32 or a range 8:64")
    return list(dict.fromkeys(out))  # a count given twice (4,4 or 4,2:8) is one row


# The caps of `simtrain run` (simtrain.scenario.layout, simtrain.scenario.models), and a
# budget of (stage, micro-batch) pairs per schedule: building, validating and evaluating a
# schedule costs ~60 us per pair on the development machine, so 262,144 pairs is ~15 s.
MAX_PAIRS = 1 << 18


def check_sizes(pp: int, vp: int, microbatches: list[int]) -> None:
    """Refuse sizes that would exhaust memory or run for hours, with the fix."""
    from simtrain.scenario.layout import MAX_MICROBATCHES
    from simtrain.scenario.models import MAX_LAYERS

    if pp * vp > MAX_LAYERS:
        raise SimtrainError(f"--pp {pp} x --vp {vp}: {pp * vp:,} virtual stages, above simtrain's limit of {MAX_LAYERS:,} "
                            "(one layer each at least); use fewer stages")
    big = max(microbatches)
    if big > MAX_MICROBATCHES:
        raise SimtrainError(f"-m {big}: above simtrain's limit of {MAX_MICROBATCHES:,} micro-batches per replica; use fewer")
    pairs = pp * vp * sum(microbatches)
    if pairs > MAX_PAIRS:
        raise SimtrainError(f"--pp {pp} --vp {vp} -m ...: {pairs:,} (stage, micro-batch) pairs per schedule over the "
                            f"{len(microbatches)} micro-batch counts, above the limit of {MAX_PAIRS:,} (about 15 s each); "
                            "ask for fewer or smaller micro-batch counts or stages")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "schedules", help="compare pipeline schedules: bubble, in-flight micro-batches, constraints",
        description="For each schedule and micro-batch count M per DP replica: valid or why not, bubble fraction with "
        "uniform costs (F=1, B=2) and free communication, peak in-flight micro-batches per rank (the activation-memory "
        "driver) and point-to-point transfers per step. With --scenario, also the bubble the engine simulates with "
        "that scenario's real costs.",
    )
    p.add_argument("--pp", type=int, default=4, help="pipeline stages (default 4)")
    p.add_argument("--vp", type=int, default=2, help="virtual stages per rank for interleaved schedules (default 2)")
    p.add_argument("--microbatches", "-m", type=_int_list, default=[4, 8, 12, 16], metavar="M[,M...]",
                   help="micro-batches per DP replica, e.g. 8,16,30,32 or 4:32 (default 4,8,12,16)")
    p.add_argument("--schedule", action="append", dest="names", metavar="NAME",
                   help="only these schedules (repeatable; default all)")
    p.add_argument("--n", type=int, default=None, help="llama3 schedule: contiguous micro-batches per stage")
    p.add_argument("--scenario", help="also simulate each valid row with this scenario's real costs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field of --scenario (repeatable)")
    p.add_argument("--plot", metavar="FILE", help="draw bubble fraction against micro-batches per replica (.png/.svg)")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--plot": (".png", ".svg")})
    if args.overrides and not args.scenario:
        raise SimtrainError(f"--set {args.overrides[0]!r}: has no effect without --scenario; add --scenario or drop --set")
    from simtrain import schedule as sched
    from simtrain.schedule.explore import BubbleCurves, bubble_curves, explore, format_table

    if args.pp < 1 or args.vp < 1:
        raise SimtrainError(f"--pp {args.pp} / --vp {args.vp}: must be at least 1; pass positive whole numbers")
    check_sizes(args.pp, args.vp, args.microbatches)
    if args.n is not None and args.n < 1:
        raise SimtrainError(f"--n {args.n}: the llama3 schedule needs at least 1 contiguous micro-batch per stage; "
                            "give --n 1 or more, or omit it for the default (pp)")
    names = args.names or sched.names()
    for n in names:
        if n not in sched.REGISTRY:
            raise SimtrainError(f"--schedule {n!r}: unknown schedule; use one of {', '.join(sched.names())}")
    params = {"n": args.n} if args.n else {}
    rows = explore(args.pp, args.vp, args.microbatches, names, params)
    real: dict[tuple[str, int], dict] = {}
    if args.scenario:
        real = _simulate_rows(args, rows)
    if args.json:
        out = []
        for r in rows:
            d = {"schedule": r.schedule, "pp": r.pp, "vp": r.vp, "microbatches": r.microbatches, "params": dict(r.params),
                 "valid": r.valid, "reason": r.reason, "bubble_fraction": r.bubble,
                 "peak_in_flight_per_rank": list(r.peak_in_flight), "peak_in_flight_microbatches": r.peak_microbatches,
                 "p2p_transfers_per_step": r.p2p_sends}
            d.update(real.get((r.schedule, r.microbatches), {}))
            out.append(d)
        print(json.dumps(out, indent=2))
    else:
        print(format_table(rows), end="")
        if real:
            print("\nwith the scenario's real costs (simulated; peak memory per GPU from simtrain.workload.memory):")
            for (name, m), d in real.items():
                params = "".join(f" {k}={v}" for k, v in d["schedule_params"].items())
                fits = "fits" if d["fits_in_memory"] else "does NOT fit"
                print(f"  {name:<12} M={m:<4}{params:<6} bubble {100 * d['simulated_bubble_fraction']:5.1f}%  "
                      f"step {d['simulated_step_time_s']:.3f} s  MFU {100 * d['simulated_mfu']:4.1f}%  "
                      f"peak {d['peak_memory_gib']:6.1f} of {d['capacity_gib']:.1f} GiB: {fits}")
            fitting = [(d["simulated_mfu"], name, m) for (name, m), d in real.items() if d["fits_in_memory"]]
            best = max(real.items(), key=lambda kv: kv[1]["simulated_mfu"])
            if fitting:
                mfu, name, m = max(fitting)
                print(f"  best that fits in memory: {name} M={m}, MFU {100 * mfu:.1f}%"
                      + ("" if best[1]["fits_in_memory"] else
                         f" ({best[0][0]} M={best[0][1]} reaches {100 * best[1]['simulated_mfu']:.1f}% but needs "
                         f"{best[1]['peak_memory_gib']:.1f} GiB)"))
            else:
                print("  none of these fits in memory")
    if args.plot:
        from simtrain.plots.schedules import plot_bubble_vs_microbatches

        curves = bubble_curves(args.pp, args.vp, args.microbatches, names, params)
        if args.scenario:  # the values the table's second part shows: simulated with the scenario's costs
            series = {f"{r.schedule} (vp={r.vp})": [] for r in rows}
            for r in rows:
                if (r.schedule, r.microbatches) in real:
                    series[f"{r.schedule} (vp={r.vp})"].append(
                        (r.microbatches, real[(r.schedule, r.microbatches)]["simulated_bubble_fraction"]))
            curves = BubbleCurves(args.pp, args.vp, series, tuple(args.microbatches),
                                  f"simulated with {args.scenario}'s costs")
        plot_bubble_vs_microbatches(curves, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _simulate_rows(args: argparse.Namespace, rows) -> dict:
    from simtrain.analysis.run import simulate_plan
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.config import load_scenario

    base = load_scenario(args.scenario, args.overrides)
    valid = [r for r in rows if r.valid]
    # every row's scenario is built and planned first: a refusal is one line, before any
    # progress text (which is drawn on a terminal only, and erased when done)
    plans = []
    for r in valid:
        dp = base.parallel.dp or 1
        gb = r.microbatches * dp * base.parallel.micro_batch
        ov = list(args.overrides) + [f"parallel.pp={r.pp}", f"parallel.vp={r.vp}", f'schedule.name="{r.schedule}"',
                                     f"training.global_batch={gb}"]
        if "n" in r.params:
            ov.append(f"schedule.n={r.params['n']}")
        plans.append(make_plan(load_scenario(args.scenario, ov)))
    tty = sys.stderr.isatty()
    out = {}
    try:
        for i, (r, plan) in enumerate(zip(valid, plans), 1):
            if tty:
                print(f"\rsimulating {i}/{len(valid)}: {r.schedule} M={r.microbatches} ...", end="", file=sys.stderr, flush=True)
            res = simulate_plan(plan)
            mem = res.extra["memory"]
            out[(r.schedule, r.microbatches)] = {"simulated_bubble_fraction": res.bubble_fraction,
                                                 "simulated_step_time_s": res.step_time_s, "simulated_mfu": res.mfu,
                                                 "schedule_params": dict(res.schedule_params),
                                                 "peak_memory_gib": mem["peak_memory_gib"], "capacity_gib": mem["capacity_gib"],
                                                 "fits_in_memory": mem["fits_in_memory"]}
    finally:
        if tty and valid:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    return out
