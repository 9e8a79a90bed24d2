"""`simtrain sweep`: simulate every combination of --grid values; CSV/Parquet/JSON/plot."""

from __future__ import annotations

import argparse
import math
import sys

from simtrain.commands import add_scenario_args, check_outputs, check_pairs


def add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=0, metavar="N", help="local worker processes (default: every core)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local processes (default) or a Ray cluster (pip install 'simtrain[ray]')")
    p.add_argument("--address", default="", metavar="ADDR",
                   help="Ray cluster address (e.g. auto or ray://host:10001); default: start a local Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


# A grid larger than this is refused unless --max-layouts says otherwise: at the few
# thousand layouts a minute of benchmarks/sweep_bench.py, about half an hour on 2 cores.
MAX_LAYOUTS = 100_000


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep", help="simulate every layout of a grid of scenario values",
        description="Simulate every combination of the --grid values on top of a scenario. The GPU "
        "count and the global batch stay those of the scenario (DP follows unless swept). Invalid "
        "layouts are kept with their reason; layouts that do not fit in memory are marked (and still "
        "simulated unless --skip-oom). One row per layout goes to a CSV (and Parquet).",
    )
    add_scenario_args(p)
    from simtrain.commands.scenario_inputs import add_megatron_arg

    add_megatron_arg(p)
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                   help="values of one scenario key, e.g. --grid parallel.tp=1,2,4,8 (repeatable)")
    p.add_argument("--out", default="sweep.csv", metavar="FILE.csv", help="CSV of all rows (default sweep.csv)")
    p.add_argument("--parquet", metavar="FILE", help="also write Parquet (needs pyarrow)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="rows in the printed table, by MFU (default 10)")
    p.add_argument("--json", action="store_true", help="print all rows as JSON instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="MFU heatmap over two swept keys (or MFU against one)")
    p.add_argument("--plot-axes", metavar="KEY[,KEY]", help="swept keys to plot (default: the first two with several values)")
    p.add_argument("--skip-oom", action="store_true",
                   help="do not simulate layouts that do not fit in memory (their metrics stay empty)")
    add_executor_args(p)
    p.add_argument("--max-layouts", type=int, default=MAX_LAYOUTS, metavar="N",
                   help=f"refuse a grid of more layouts than this (default {MAX_LAYOUTS:,}: about half an hour "
                        "at a few thousand layouts a minute)")
    return p


def _plot_axes(axes, spec: str | None):
    from simtrain.scenario.errors import SimtrainError

    if spec:
        want = [s.strip() for s in spec.split(",") if s.strip()]
        by_key = dict(axes)
        bad = [w for w in want if w not in by_key]
        if bad or not 1 <= len(want) <= 2:
            raise SimtrainError(f"--plot-axes {spec!r}: give one or two swept keys among {', '.join(by_key)}")
        return [(w, by_key[w]) for w in want]
    multi = [a for a in axes if len(a[1]) > 1]
    return (multi or axes)[:2]


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--out": (".csv",), "--parquet": (".parquet",), "--plot": (".png", ".svg")})
    check_pairs(args, [("--plot-axes", "--plot", bool(args.plot)), ("--address", "--executor ray", args.executor == "ray")])
    from simtrain.analysis.report import dumps
    from simtrain.commands.scenario_inputs import megatron_input
    from simtrain.explore.sweep import Task, expand, parse_grid, prepare_base, run_tasks
    from simtrain.explore.sweep.evaluate import columns
    from simtrain.explore.sweep.output import ranked, top_table, write_csv, write_parquet
    from simtrain.explore.sweep.progress import Progress
    from simtrain.scenario.errors import SimtrainError

    if not args.grid:
        raise SimtrainError("sweep: no --grid given; add e.g. --grid parallel.tp=1,2,4,8 --grid parallel.pp=1,2,4")
    if args.top < 0:
        raise SimtrainError(f"--top {args.top}: must be 0 or more; give the number of best layouts to print, e.g. --top 10 (0: none)")
    axes = parse_grid(args.grid)
    swept = [k for k, _ in axes]
    plot_axes = _plot_axes(axes, args.plot_axes) if args.plot else None
    base = prepare_base(args.scenario, args.overrides, swept, megatron=megatron_input(args))
    n = math.prod(len(v) for _, v in axes)
    if n > args.max_layouts:  # a typo'd range would otherwise run for hours, silently with --no-progress
        sizes = " x ".join(str(len(v)) for _, v in axes)
        raise SimtrainError(f"sweep: the grid has {n:,} layouts ({sizes}), more than --max-layouts {args.max_layouts:,}; "
                            "narrow an axis or split the sweep, or raise --max-layouts")
    points = expand(axes)
    tasks = [Task(i, v) for i, v in enumerate(points)]
    progress = Progress(len(tasks), "sweep", enabled=not args.no_progress)
    rows = run_tasks(base, tasks, args.jobs, args.executor, args.address,
                     opts={"simulate_unfit": not args.skip_oom}, progress=progress)
    progress.close()
    cols = columns(swept)
    write_csv(args.out, rows, cols)
    if args.parquet:
        write_parquet(args.parquet, rows, cols)
    if args.plot:
        from simtrain.plots.sweep import plot_sweep

        title = f"{base.get('name', 'sweep')}: best MFU, {len(rows)} layouts"
        try:
            plot_sweep(rows, plot_axes, args.plot, title)
        except OSError as e:
            raise SimtrainError(f"--plot {args.plot!r}: cannot write it ({e.strerror}); check the folder exists and is writable") from None
    n_valid = sum(1 for r in rows if r["valid"])
    if args.json:
        print(dumps([{c: r.get(c) for c in cols} for r in rows]))
        return _all_refused(rows) if not n_valid else 0
    n_fit = sum(1 for r in rows if r["valid"] and r["fits_in_memory"])
    errors = [r for r in rows if str(r.get("reason", "")).startswith("simulator error")]
    print(f"simtrain sweep: {base.get('name')}: {len(rows)} layouts, {n_valid} valid, {n_fit} fit in memory, "
          f"{len(rows) - n_valid} invalid (reasons in {args.out})")
    if args.top:
        print(top_table(rows, swept, args.top))
        best = ranked(rows)
        if args.top > 1 and len(best) > 1:
            from simtrain.analysis.compare import side_from_row, why

            print(f"  why #1: {why(side_from_row('#1', best[0]), side_from_row('#2', best[1]))}")
    wrote = [args.out] + [x for x in (args.parquet, args.plot) if x]
    print(f"  wrote {', '.join(wrote)}")
    if errors:
        print(f"simtrain: warning: {len(errors)} layouts hit a simulator error (reason column); first: {errors[0]['reason']}", file=sys.stderr)
    return _all_refused(rows) if not n_valid else 0


def _all_refused(rows) -> int:
    """Every layout of the grid refused: one line saying why (the commonest reason), exit 1."""
    from simtrain.explore.sweep.output import no_winner

    print(f"simtrain: error: {no_winner(rows)}", file=sys.stderr)
    return 1
