"""`simtrain collective`: nccl-tests-style benchmark of one collective on a topology."""

from __future__ import annotations

import argparse
import json

from simtrain.commands.link_whatifs import add_set_option, parse_link_whatifs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from simtrain.network.collectives import ALGOS, OPS

    p = sub.add_parser(
        "collective", help="time a collective on a simulated cluster, as nccl-tests reports it",
        description="Run one collective over the first N devices of a topology as simpy processes over the "
        "flow network and print, per size, the time, algbw = size/time and busbw = algbw x factor "
        "(2(n-1)/n all-reduce; (n-1)/n reduce-scatter, all-gather, all-to-all; 1 broadcast, send-recv), "
        "in GB/s (1e9 bytes/s) as nccl-tests prints them. See docs/collectives.md.",
    )
    p.add_argument("op", choices=OPS, help="the collective")
    p.add_argument("--topology", default="dgx-h100", help="topology name in topologies/ or a .toml path (default: dgx-h100)")
    p.add_argument("--gpus", type=int, default=8, help="number of devices, the first N of the topology (default: 8)")
    p.add_argument("--size", default="1GiB", help="buffer size, e.g. 1GiB, 512M, 4096 (binary K/M/G; default 1GiB)")
    p.add_argument("--sizes", metavar="FIRST:LAST", help="sweep sizes doubling from FIRST to LAST, like nccl-tests -b FIRST -e LAST -f 2")
    p.add_argument("--algo", default="auto", choices=("auto",) + ALGOS, help="algorithm (default auto: the least predicted time)")
    p.add_argument("--device", default="", help="override the topology's device type")
    p.add_argument("--json", action="store_true",
                   help="print JSON rows with size_bytes, time_s, algbw_gbps, busbw_gbps (GB/s, 1e9 bytes/s), algo")
    add_set_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from simtrain.hardware.load import load_topology
    from simtrain.network.nccl import CollectiveBench, parse_sizes
    from simtrain.scenario.units import format_size, parse_size

    sizes = parse_sizes(args.sizes) if args.sizes else [parse_size(args.size, "--size")]
    if args.gpus < 1:
        from simtrain.scenario.errors import bad

        raise bad("--gpus", args.gpus, "need at least 2 devices", "use --gpus 2 or more")
    topo = load_topology(args.topology, args.gpus, args.device, tiers=parse_link_whatifs(args.set))
    bench = CollectiveBench(topo, args.op, args.gpus, args.algo)
    rows = bench.sweep(sizes)
    used = sorted({r.algo for r in rows})
    if args.algo != "auto" and used != [args.algo]:
        from simtrain.scenario.errors import bad

        raise bad("--algo", args.algo, f"does not apply to {args.op} here (it runs as {', '.join(used)})",
                  "omit --algo, or pick an algorithm the operation has")
    if args.json:
        print(json.dumps([r.row() for r in rows], indent=2))
        return 0
    print(f"# simtrain collective {args.op}: {args.gpus} x {topo.device.name} on {topo.name}, algo {args.algo}")
    print("# bandwidths in GB/s (1e9 bytes/s), as nccl-tests")
    print(f"{'size':>10} {'bytes':>13} {'time (us)':>12} {'algbw':>9} {'busbw':>9}  algo")
    for r in rows:
        print(f"{format_size(r.size_bytes):>10} {r.size_bytes:>13,d} {r.time_s * 1e6:>12.2f} {r.algbw_gbps:>9.2f} {r.busbw_gbps:>9.2f}  {r.algo}")
    return 0
