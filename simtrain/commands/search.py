"""`simtrain search`: the best valid layout for the scenario's model, cluster and batch."""

from __future__ import annotations

import argparse

from simtrain.commands import add_scenario_args, check_outputs, check_pairs

DIMS = (("tp", int), ("pp", int), ("cp", int), ("vp", int), ("micro_batch", int))


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "search", help="find the best layout (TP, PP, DP, CP, VP, micro-batch, recompute, schedule)",
        description="Search the layouts of the scenario's model on its GPUs with its global batch: "
        "prune what is invalid, what does not fit in memory (estimated on the plan) and what cannot "
        "beat the K-th best (a compute-only MFU bound), simulate the rest, print the winner and the "
        "runners-up. Rules in simtrain/explore/search.py and the README.",
    )
    add_scenario_args(p)
    from simtrain.commands.scenario_inputs import add_megatron_arg
    from simtrain.commands.sweep import add_executor_args

    add_megatron_arg(p)
    p.add_argument("--top", type=int, default=5, metavar="K", help="winner + runners-up to print (default 5)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", metavar="FILE.csv", help="write every candidate with its status and reason")
    for name, _ in DIMS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"space_{name}", metavar="N,N,...",
                       help=f"{name} values to try (default: see simtrain/explore/search.py)")
    p.add_argument("--recompute", dest="space_recompute", metavar="MODES", help="recompute modes (default none,selective,full)")
    p.add_argument("--sp", dest="space_sp", metavar="BOOLS", help="sequence parallelism: false,true (default both)")
    p.add_argument("--schedules", dest="space_schedules", metavar="NAMES",
                   help="schedules (default 1f1b,interleaved; also zb-h1, llama3, bfs, gpipe, interleaved-zb, zb-v, dualpipe, dualpipe-v)")
    add_executor_args(p)
    return p


def _ints(opt: str, text: str) -> tuple[int, ...]:
    from simtrain.scenario.errors import SimtrainError

    out = []
    for x in text.split(","):
        x = x.strip()
        if not x.isdigit() or int(x) < 1:
            raise SimtrainError(f"--{opt} {text!r}: {x!r} is not a positive whole number; write e.g. --{opt} 1,2,4,8")
        out.append(int(x))
    return tuple(dict.fromkeys(out))


def _space(args, s, world: int, gpus_per_node: int):
    import dataclasses

    from simtrain import schedule as sched
    from simtrain.explore.search import RECOMPUTE, default_space
    from simtrain.scenario.errors import SimtrainError

    space = default_space(s, world, gpus_per_node)
    changes = {}
    for name, _ in DIMS:
        text = getattr(args, f"space_{name}")
        if text is not None:  # an empty list is an error, not the default
            changes[name] = _ints(name.replace("_", "-"), text)
    if args.space_recompute is not None:
        modes = tuple(m.strip() for m in args.space_recompute.split(","))
        bad = [m for m in modes if m not in RECOMPUTE]
        if bad:
            raise SimtrainError(f"--recompute {args.space_recompute!r}: {bad[0]!r} is not a mode; use some of {', '.join(RECOMPUTE)}")
        changes["recompute"] = tuple(dict.fromkeys(modes))  # each once, as the whole-number lists
    if args.space_sp is not None:
        vals = []
        for x in args.space_sp.split(","):
            x = x.strip().lower()
            if x not in ("true", "false"):
                raise SimtrainError(f"--sp {args.space_sp!r}: {x!r} is not true or false; write e.g. --sp false,true")
            vals.append(x == "true")
        changes["sequence_parallel"] = tuple(dict.fromkeys(vals))
    if args.space_schedules is not None:
        names = tuple(n.strip() for n in args.space_schedules.split(","))
        bad = [n for n in names if n not in sched.REGISTRY]
        if bad:
            raise SimtrainError(f"--schedules {args.space_schedules!r}: unknown schedule {bad[0]!r}; use some of {', '.join(sched.REGISTRY)}")
        changes["schedules"] = tuple(dict.fromkeys(names))
    return dataclasses.replace(space, **changes)


def _table(rows, k: int) -> str:
    from simtrain.explore.sweep.output import memory_cell

    head = ["#", "TP", "CP", "PP", "DP", "VP", "mb", "recompute", "SP", "schedule", "MFU %", "bound %", "step s", "bubble %",
            "peak GiB", "fits"]
    body = []
    for i, r in enumerate(rows[:k], 1):
        body.append([str(i), str(r["tp"]), str(r["cp"]), str(r["pp"]), str(r["dp"]), str(r["vp"]), str(r["micro_batch"]),
                     r["recompute"], "on" if r["sequence_parallel"] else "off", r["schedule"],
                     f"{100 * r['mfu']:.1f}", f"{100 * r['mfu_bound']:.1f}", f"{r['step_time_s']:.3f}",
                     f"{100 * r['bubble_fraction']:.1f}", memory_cell(r), "yes" if r.get("fits_in_memory") else "no"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  " + "  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  " + "  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in body]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--out": (".csv",)})
    check_pairs(args, [("--address", "--executor ray", args.executor == "ray")])
    from simtrain.analysis.compare import attribute, side_from_row, why
    from simtrain.analysis.report import dumps
    from simtrain.commands.scenario_inputs import megatron_input
    from simtrain.explore.search import search, set_args
    from simtrain.explore.sweep import prepare_base
    from simtrain.explore.sweep.base import point_scenario
    from simtrain.explore.sweep.evaluate import columns
    from simtrain.explore.sweep.output import write_csv
    from simtrain.hardware.load import load_topology
    from simtrain.scenario.errors import SimtrainError

    if args.top < 1:
        raise SimtrainError(f"--top {args.top}: must be at least 1; give the number of layouts to print, e.g. --top 5 (the winner and 4 runners-up)")
    base = prepare_base(args.scenario, args.overrides, [], megatron=megatron_input(args))
    s = point_scenario(base, {})
    world = base["cluster"]["gpus"]
    gb = base["training"]["global_batch"]
    topo = load_topology(s.cluster.topology, world, s.cluster.device)
    space = _space(args, s, world, topo.gpus_per_node)
    pinned = s.parallel.first_stage_layers >= 0 or s.parallel.last_stage_layers >= 0
    res = search(base, space, args.top, args.jobs, args.executor, args.address, progress=not args.no_progress,
                 layers=s.model.num_hidden_layers, world=world, pinned_ends=pinned)
    if args.out:
        cols = columns([]) + ["status", "mfu_bound"]
        write_csv(args.out, res.rows, cols)
    head = {"scenario": base.get("name"), "model": s.model.name, "gpus": world, "device": topo.device.name,
            "global_batch": gb, "seq_len": s.training.seq_len, "counts": res.counts}
    if args.json:
        keep = ["tp", "cp", "pp", "dp", "vp", "micro_batch", "recompute", "sequence_parallel", "schedule", "microbatches",
                "mfu", "mfu_bound", "hfu", "step_time_s", "tflops_per_gpu", "tokens_per_s", "bubble_fraction",
                "peak_memory_gib", "memory_capacity_gib", "fits_in_memory"] + [c for c in res.rows[0] if c.startswith("breakdown_")]
        rows = [{c: r.get(c) for c in keep} for r in res.ranked[:args.top]]
        vs = None
        if len(res.ranked) > 1:  # MFU points by cause, winner minus runner-up (simtrain.analysis.compare)
            parts = attribute(side_from_row("#2", res.ranked[1]), side_from_row("#1", res.ranked[0]))
            vs = {k: v for k, v in parts.items() if k != "unattributed"}
        print(dumps({**head, "winner": rows[0] if rows else None, "runners_up": rows[1:], "winner_vs_runner_up": vs}))
        return 0
    c = res.counts
    print(f"simtrain search: {head['scenario']}: {s.model.name} on {world:,} x {topo.device.name}, "
          f"{gb:,} sequences x {s.training.seq_len:,} tokens per step")
    print(f"  {c['candidates']:,} candidates: {c['invalid']:,} invalid, {c['does not fit']:,} do not fit in memory, "
          f"{c['duplicate']:,} duplicates, {c['cannot win']:,} cannot win (MFU bound), {c['simulated']:,} simulated")
    if not res.ranked:
        verdict = ("no candidate is a valid layout" if c["invalid"] == c["candidates"]
                   else "no valid layout fits in memory")
        print(f"  {verdict}; widen the space (--tp, --pp, --cp, --recompute) or add GPUs (reasons: --out FILE.csv)")
        return 1
    print(_table(res.ranked, args.top))
    if len(res.ranked) > 1:
        a, b = side_from_row("#1", res.ranked[0]), side_from_row("#2", res.ranked[1])
        print(f"  why #1: {why(a, b)} (points by cause, as simtrain compare attributes them)")
    print(f"  winner: simtrain run {args.scenario or ''} {set_args(res.ranked[0])}".replace("  --set", " --set"))
    if args.out:
        print(f"  wrote {args.out}")
    return 0
