"""Cluster networks as networkx graphs: the `Topology` interface every builder implements.

Nodes are accelerators (ints 0..N-1, the global rank order) and switches (strings).
Every physical cable is two directed edges, one per direction, each with `capacity`
(achievable bytes/s in that direction), `latency` (s) and `kind`. A transfer follows
`Topology.route(src, dst)`: a tuple of directed edges.

Kinds of file (`kind = ...` in topologies/*.toml), one builder module each, listed in
simtrain.hardware.load.BUILDERS: "fat-tree" (simtrain.hardware.fat_tree), "explicit"
(simtrain.hardware.explicit) and "torus" (simtrain.hardware.torus: TPU 3D tori).

Bisection bandwidth (`Topology.bisection_bandwidth`): the capacity, in one direction, of
the minimum cut between the first and the second half of the devices in rank order
(max-flow = min-cut, Ford & Fulkerson 1956), counting every link, NVLink included. Rank
order fills nodes, leaves and pods contiguously, so for a fat tree this is the cut a
data-parallel job that splits the machine in two halves sees; for a torus the slowest
axis is cut (see simtrain.hardware.torus).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Hashable

import networkx as nx

from simtrain.hardware.devices import Device, get_device
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import parse_dataclass

Link = tuple[Hashable, Hashable]


@dataclass(frozen=True)
class LinkInfo:
    capacity: float  # bytes/s, achievable, per direction
    latency: float  # seconds
    kind: str



@dataclass(frozen=True)
class TopologySpec:
    name: str = ""
    description: str = ""
    kind: str = "fat-tree"
    device: str = "H100-SXM"
    gpus_per_node: int = 8


class Topology:
    """Base class: a set of accelerators and directed links with a routing function."""

    name: str
    description: str
    device: Device
    num_gpus: int
    gpus_per_node: int

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        raise NotImplementedError

    def link(self, edge: Link) -> LinkInfo:
        raise NotImplementedError

    @cached_property
    def graph(self) -> nx.DiGraph:
        raise NotImplementedError

    @cached_property
    def capacities(self) -> dict[Link, float]:
        """Memo of `link(edge).capacity` by link, filled by the flow networks on this
        topology and shared by them (a topology does not change once built; a sweep's
        layouts ask for the same links again and again)."""
        return {}

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node

    def nvlink_domains(self) -> list[int] | None:
        """The NVLink (scale-up) domain of every device, as an id per rank, or None when
        the topology has no such tier (a torus: every link is the same ICI)."""
        return None

    def route_latency(self, src: int, dst: int) -> float:
        return sum(self.link(e).latency for e in self.route(src, dst))

    def route_load(self, src: int, dst: int) -> list[tuple[Link, float]]:
        """Fraction of a src -> dst flow on each directed link it uses.

        Single-path routing puts the whole flow (1.0) on every link of `route`; multipath
        routing (adaptive routing in a fat tree) splits it over equal-cost links.
        """
        return [(e, 1.0) for e in self.route(src, dst)]

    def period(self) -> int | None:
        """Translation period T: shifting every device by T (mod num_gpus) maps the network
        onto itself, routes, fractions, capacities and latencies included; None when there
        is none (simtrain.network.periodic then routes every flow)."""
        return None

    def orbit_link(self, link: Link, period: int) -> Link:
        """The representative of `link`'s orbit under shifts by multiples of `period` (a
        multiple of `period()`): the image that touches devices [0, period)."""
        raise NotImplementedError

    def has_link(self, u: Hashable, v: Hashable) -> bool:
        """Whether the directed link u -> v exists (what-ifs name cables by their ends)."""
        return self.graph.has_edge(u, v)

    def bisection_bandwidth(self) -> float:
        """Bytes/s, one direction, across the min cut between the rank-order halves.

        Generic: max-flow on `graph` from a super-source on devices [0, N/2) to a
        super-sink on [N/2, N). Subclasses with structure override it with a closed form
        or a reduced graph (tests check they agree with this generic computation).
        """
        return max_flow_between(self.graph, range(self.num_gpus // 2), range(self.num_gpus // 2, 2 * (self.num_gpus // 2)))

    def inventory(self) -> dict[str, Any]:
        """Switches by kind, cables by kind as (count, capacities in bytes/s) and hosts, for
        `simtrain topology`. Generic: counted on `graph`; fat trees and tori count them in
        closed form (no million-node graph)."""
        G = self.graph
        switches: dict[str, int] = {}
        for _, d in G.nodes(data=True):
            if d.get("kind") != "gpu":
                k = d.get("kind", "switch")
                switches[k] = switches.get(k, 0) + 1
        cables: dict[str, set] = {}
        caps: dict[str, set] = {}
        for u, v, d in G.edges(data=True):
            cables.setdefault(d["kind"], set()).add(frozenset((u, v)))  # a cable = both directions
            caps.setdefault(d["kind"], set()).add(d["capacity"])
        return {"switches": switches, "links": {k: (len(cables[k]), sorted(caps[k])) for k in cables},
                "hosts": len({self.node_of(g) for g in range(self.num_gpus)})}

    def tier_bandwidth(self) -> list[tuple[str, float]]:
        """(tier, bytes/s per device per direction) from the device outwards.

        Generic: a device's outgoing capacity grouped by link kind.
        """
        out: dict[str, float] = {}
        G = self.graph
        if self.num_gpus == 0 or 0 not in G:
            return []
        for _, v, d in G.out_edges(0, data=True):
            out[d["kind"]] = out.get(d["kind"], 0.0) + d["capacity"]
        return sorted(out.items(), key=lambda kv: -kv[1])


def max_flow_between(G: nx.DiGraph, sources, sinks) -> float:
    """Max flow (= min cut capacity) from a set of nodes to another, by edge `capacity`."""
    sources, sinks = list(sources), list(sinks)
    if not sources or not sinks:
        return 0.0
    H = nx.DiGraph()
    H.add_edges_from((u, v, {"capacity": d["capacity"]}) for u, v, d in G.edges(data=True))
    S, T = ("__source__",), ("__sink__",)
    for n in sources:
        H.add_edge(S, n)  # no capacity attribute: infinite
    for n in sinks:
        H.add_edge(n, T)
    return float(nx.maximum_flow_value(H, S, T))


def check_link_spec(obj: Any, name: str, path: str) -> None:
    """A link table's latency is zero or more and its efficiency an achievable fraction."""
    lat = getattr(obj, "latency_us", 0.0)
    if lat < 0:
        raise bad(f"{name}.latency_us", lat, "must be zero or positive", f"fix {path}")
    eff = getattr(obj, "efficiency", 1.0)
    if not 0 < eff <= 1:
        raise bad(f"{name}.efficiency", eff, "must be in (0, 1]: the achievable fraction of the wire rate", f"fix {path}")


def resolve_device(device_override: "str | Device", own: str, path: str) -> Device:
    """The topology's device: `device_override` (cluster.device, a name or an already
    resolved Device) or the file's own `device`, looked up next to the file first."""
    if isinstance(device_override, Device):
        return device_override
    if device_override:
        return get_device(device_override, "cluster.device")
    return get_device(own, f"{path}: device", near=path)


def topology_spec(data: dict[str, Any], kind: str, own: tuple[str, ...], num_gpus: int, device_override: "str | Device",
                  path: str) -> tuple[TopologySpec, Device]:
    """The top-level keys of a fat-tree or explicit file (`own`: its tables), checked, and
    its device: what both builders share."""
    top = {k: v for k, v in data.items() if k not in own}
    extra = [k for k in top if k not in TopologySpec.__dataclass_fields__]
    if extra:
        valid = list(TopologySpec.__dataclass_fields__) + ([f"[[{k}]]" for k in own] if kind == "explicit" else [f"[{k}]" for k in own])
        raise SimtrainError(f"unknown key {extra[0]} in {kind} topology {path}: valid keys are {', '.join(valid)}")
    spec = parse_dataclass(TopologySpec, top, "topology")
    device = resolve_device(device_override, spec.device, path)
    if num_gpus < 1:
        raise bad("cluster.gpus", num_gpus, "need at least one GPU", "set cluster.gpus or the parallel sizes")
    if spec.gpus_per_node < 1:
        raise bad("gpus_per_node", spec.gpus_per_node, "must be positive", f"fix {path}")
    return spec, device
