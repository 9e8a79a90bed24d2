"""`simtrain run`: simulate one training step and report it."""

from __future__ import annotations

import argparse
import sys
import time

from simtrain.commands import add_scenario_args, check_outputs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run", help="simulate one training step of a scenario",
        description="Simulate one training step and print step time, MFU, HFU, throughput, bubble "
        "and where the time goes. Without a scenario, runs the default (Llama 3 405B on 8,192 H100s).",
    )
    add_scenario_args(p)
    from simtrain.commands.scenario_inputs import add_megatron_arg

    add_megatron_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--ops", action="store_true",
                   help="also print the per-layer kernel table: every kernel of a layer with launches, time and share "
                        "(with --json: an 'ops' key)")
    p.add_argument("--timeline", metavar="FILE", help="draw the per-device Gantt chart (.png or .svg)")
    p.add_argument("--window", metavar="START:END",
                   help="--timeline: draw only this stretch of the step, in seconds (e.g. 2.5:3.0; END may be omitted)")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome/Perfetto trace (.json)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress line on stderr (shown on a terminal for runs longer than 2 s)")
    return p


def device_names(plan) -> dict[int, str]:
    L = plan.layout
    out = {}
    for d in plan.simulated:
        c = L.coord(d)
        name = f"stage {c.pp}"
        if not plan.symmetric:
            name = f"rank {d} (pp{c.pp} dp{c.dp} tp{c.tp}" + (f" cp{c.cp}" if L.cp > 1 else "") + ")"
        out[d] = name
    return out


MAX_TIMELINE_ROWS = 64


def timeline_devices(plan, result) -> list[int]:
    """Rows to draw: every simulated device when they fit on a page; otherwise data-parallel
    replica 0 (TP rank 0, CP rank 0) of each pipeline stage, plus the slowest device."""
    devices = list(plan.simulated)
    if len(devices) <= MAX_TIMELINE_ROWS:
        return devices
    L = plan.layout
    rows = [d for d in devices if (c := L.coord(d)).dp == 0 and c.tp == 0 and c.cp == 0][:MAX_TIMELINE_ROWS]
    slow = (result.extra.get("hotspots") or {}).get("slowest_device", {}).get("rank")
    if slow is not None and slow not in rows:
        rows.append(slow)
    return rows


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--timeline": (".png", ".svg"), "--trace": (".json",)})
    from simtrain.commands import check_pairs

    check_pairs(args, [("--window", "--timeline", bool(args.timeline))])
    from simtrain.analysis.report import dumps, json_report, text_report
    from simtrain.analysis.run import simulate
    from simtrain.scenario.config import load_scenario

    from simtrain.commands.scenario_inputs import megatron_input

    scenario = load_scenario(args.scenario, args.overrides, megatron=megatron_input(args))
    meter = None if args.no_progress or not sys.stderr.isatty() else _ProgressLine()
    try:
        result = simulate(scenario, progress=meter, link_series=bool(args.trace))
    finally:
        if meter is not None:
            meter.close()
    plan = result.extra["plan"]
    names = device_names(plan)
    if args.timeline:
        from simtrain.plots.timeline import parse_window, plot_timeline, timeline_rows

        window = parse_window(args.window, result.step_time_s) if args.window is not None else None

        L = result.layout
        title = (f"{result.scenario}: {result.schedule}, TP{L['tp']} PP{L['pp']} DP{L['dp']} VP{L['vp']}, "
                 f"{L['microbatches_per_replica']} micro-batches/replica — step {result.step_time_s:.2f} s, "
                 f"bubble {100 * result.bubble_fraction:.1f}%, MFU {100 * result.mfu:.1f}%")
        rows = timeline_devices(plan, result)
        if len(rows) < len(plan.simulated):
            title += f" — {len(rows)} of {len(plan.simulated)} devices shown"
        shares = None
        if window:
            title += f" — {window[0]:.3f}–{window[1]:.3f} s"
        elif len(rows) == len(plan.simulated) and result.step_time_s > 0:  # the report's breakdown
            shares = {k: v / result.step_time_s for k, v in result.breakdown.items()}
        _write(lambda: plot_timeline(timeline_rows(result.records, rows), args.timeline, title, names, window, shares),
               "--timeline", args.timeline)
    if args.trace:
        from simtrain.analysis.trace import write_trace

        _write(lambda: write_trace(args.trace, plan, result.records, names, {"scenario": result.scenario},
                                   result.extra.get("_link_series")), "--trace", args.trace)
    if args.json:
        report = json_report(result)
        if args.ops:
            from simtrain.analysis.ops_table import ops_json

            report["ops"] = ops_json(plan)
        print(dumps(report))  # deterministic: the wall-clock figures go to stderr
        print(f"simtrain: simulated in {result.wall_time_s:.2f} s wall time (event loop {result.engine_run_s:.2f} s)",
              file=sys.stderr)
    else:
        print(text_report(result))
        if args.ops:
            from simtrain.analysis.ops_table import ops_text

            print(ops_text(plan))
        for opt in ("timeline", "trace"):
            if getattr(args, opt):
                print(f"  wrote {getattr(args, opt)}")
    return 0


class _ProgressLine:
    """One redrawn stderr line for long simulations: simulated time reached, events
    processed, wall time (the step's length is not known until it ends, so no ETA)."""

    def __init__(self, after_s: float = 2.0) -> None:
        self.t0, self.after_s, self.shown = time.perf_counter(), after_s, False

    def __call__(self, simulated_s: float, events: int) -> None:
        elapsed = time.perf_counter() - self.t0
        if elapsed >= self.after_s:
            self.shown = True
            print(f"\rsimulating: {simulated_s:8.3f} s of the step reached, {events:,} events, {elapsed:,.0f} s elapsed",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _write(fn, opt: str, path: str) -> None:
    from simtrain.scenario.errors import SimtrainError

    try:
        fn()
    except OSError as e:
        raise SimtrainError(f"{opt} {path!r}: cannot write it ({e.strerror}); check the folder exists and is writable") from None
