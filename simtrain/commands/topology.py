"""`simtrain topology`: summarize (and optionally draw) a cluster topology."""

from __future__ import annotations

import argparse
import json

from simtrain.commands.link_whatifs import add_set_option, parse_link_whatifs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "topology", help="summarize a cluster topology: devices, switches, links, bandwidth per tier, bisection",
        description="Build topology NAME for N devices and print its devices, switches, links by kind, "
        "bandwidth per device at each tier and bisection bandwidth (one direction, min cut between the "
        "rank-order halves). Bandwidths in GB/s (1e9 bytes/s).",
    )
    p.add_argument("name", help="topology name in topologies/ or a .toml path")
    p.add_argument("--gpus", type=int, default=None,
                   help="number of devices (default: 8; an explicit topology file has its own)")
    p.add_argument("--device", default="", help="override the topology's device type")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="FILE", help="draw the graph (.png or .svg; small graphs only, up to 512 nodes)")
    add_set_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from simtrain.hardware.load import load_topology
    from simtrain.hardware.summary import summarize, text
    from simtrain.scenario.errors import SimtrainError

    topo = load_topology(args.name, 8 if args.gpus is None else args.gpus, args.device,
                         tiers=parse_link_whatifs(args.set))
    if args.gpus is not None and topo.num_gpus < args.gpus:
        from simtrain.scenario.errors import bad

        raise bad("--gpus", args.gpus, f"topology {topo.name!r} has only {topo.num_gpus} devices", "use fewer GPUs or a larger topology")
    if args.draw:
        from simtrain.plots.topology import draw_topology

        try:
            draw_topology(topo, args.draw)
        except OSError as e:
            raise SimtrainError(f"--draw {args.draw!r}: cannot write it ({e.strerror}); check the folder exists and is writable") from None
    s = summarize(topo)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(text(s))
        if args.draw:
            print(f"  wrote {args.draw}")
    return 0
