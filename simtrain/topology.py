"""Cluster networks as networkx graphs, built from files in topologies/.

Nodes are accelerators (ints 0..N-1, the global rank order) and switches (strings).
Every physical cable is two directed edges, one per direction, each with `capacity`
(achievable bytes/s in that direction), `latency` (s) and `kind`. A transfer follows
`Topology.route(src, dst)`: a tuple of directed edges.

Kinds of file (`kind = ...`):
- "fat-tree": NVSwitch nodes (every GPU one NVLink port pair to the node's switch) plus
  one NIC per GPU into a two-tier leaf/spine fabric, rail-optimized (GPU i of every node
  on leaf i of its scalable unit) or classic (a node's NICs on one leaf), with an
  oversubscription ratio on the leaf uplinks and equal-cost routes over the spines
  chosen by a hash of (src, dst) as ECMP does.
- "explicit": `[[nodes]]` and `[[links]]` tables describe any graph; routes are shortest
  paths by latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Hashable

import networkx as nx

from simtrain.config import parse_dataclass, read_toml, resolve_path
from simtrain.devices import Device, get_device
from simtrain.errors import SimtrainError, bad
from simtrain.units import US, gbps_to_bytes_per_s

Link = tuple[Hashable, Hashable]


@dataclass(frozen=True)
class LinkInfo:
    capacity: float  # bytes/s, achievable, per direction
    latency: float  # seconds
    kind: str


@dataclass(frozen=True)
class NVLinkSpec:
    bandwidth_gbps: float = 3600.0  # per GPU per direction
    latency_us: float = 0.5  # per hop (GPU -> NVSwitch or NVSwitch -> GPU)
    efficiency: float = 0.8  # achievable fraction of the wire rate


@dataclass(frozen=True)
class NICSpec:
    bandwidth_gbps: float = 400.0  # per NIC per direction
    latency_us: float = 2.5  # GPU -> leaf, including NIC and PCIe
    efficiency: float = 0.9


@dataclass(frozen=True)
class FabricSpec:
    rail_optimized: bool = True
    nodes_per_leaf: int = 32  # rail-optimized: nodes in a scalable unit; classic: nodes per leaf
    spines: int = 16  # spine switches; every leaf has one uplink to each
    oversubscription: float = 1.0  # leaf downlink bandwidth / leaf uplink bandwidth
    latency_us: float = 0.5  # leaf <-> spine hop


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

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node

    def route_latency(self, src: int, dst: int) -> float:
        return sum(self.link(e).latency for e in self.route(src, dst))


class FatTree(Topology):
    def __init__(self, spec: TopologySpec, nvlink: NVLinkSpec, nic: NICSpec, fabric: FabricSpec, num_gpus: int, device: Device):
        self.name, self.description = spec.name, spec.description
        self.spec, self.nvlink, self.nic, self.fabric = spec, nvlink, nic, fabric
        self.device = device
        self.gpus_per_node = spec.gpus_per_node
        self.num_gpus = num_gpus
        self.num_nodes = math.ceil(num_gpus / self.gpus_per_node)
        g = self.gpus_per_node
        self._nvl = LinkInfo(gbps_to_bytes_per_s(nvlink.bandwidth_gbps) * nvlink.efficiency, nvlink.latency_us * US, "nvlink")
        self._nic = LinkInfo(gbps_to_bytes_per_s(nic.bandwidth_gbps) * nic.efficiency, nic.latency_us * US, "nic")
        if fabric.rail_optimized:
            self.num_leaves = math.ceil(self.num_nodes / fabric.nodes_per_leaf) * g
            down_ports = fabric.nodes_per_leaf
        else:
            self.num_leaves = math.ceil(self.num_nodes / fabric.nodes_per_leaf)
            down_ports = fabric.nodes_per_leaf * g
        uplink_total = down_ports * gbps_to_bytes_per_s(nic.bandwidth_gbps) * nic.efficiency / fabric.oversubscription
        self.num_spines = fabric.spines if self.num_leaves > 1 else 0
        per_spine = uplink_total / max(self.num_spines, 1)
        self._up = LinkInfo(per_spine, fabric.latency_us * US, "spine")

    # --- naming -------------------------------------------------------------------
    def leaf_of(self, gpu: int) -> int:
        node, local = divmod(gpu, self.gpus_per_node)
        if self.fabric.rail_optimized:
            return (node // self.fabric.nodes_per_leaf) * self.gpus_per_node + local
        return node // self.fabric.nodes_per_leaf

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        if src == dst:
            return ()
        ns, nd = src // self.gpus_per_node, dst // self.gpus_per_node
        if ns == nd:
            sw = f"nvsw{ns}"
            return ((src, sw), (sw, dst))
        ls, ld = self.leaf_of(src), self.leaf_of(dst)
        a, b = f"leaf{ls}", f"leaf{ld}"
        if ls == ld:
            return ((src, a), (a, dst))
        # ECMP: a deterministic hash of the flow picks one of the equal-cost spines
        sp = f"spine{(src * 2654435761 + dst * 40503) % self.num_spines}"
        return ((src, a), (a, sp), (sp, b), (b, dst))

    def link(self, edge: Link) -> LinkInfo:
        u, v = edge
        if isinstance(u, int) or isinstance(v, int):
            other = v if isinstance(u, int) else u
            return self._nvl if other.startswith("nvsw") else self._nic
        return self._up

    @cached_property
    def graph(self) -> nx.DiGraph:
        G = nx.DiGraph()
        for gpu in range(self.num_gpus):
            G.add_node(gpu, kind="gpu", device=self.device.name)
        edges = []
        for gpu in range(self.num_gpus):
            sw, leaf = f"nvsw{gpu // self.gpus_per_node}", f"leaf{self.leaf_of(gpu)}"
            edges += [(gpu, sw), (sw, gpu), (gpu, leaf), (leaf, gpu)]
        for leaf in range(self.num_leaves):
            for sp in range(self.num_spines):
                edges += [(f"leaf{leaf}", f"spine{sp}"), (f"spine{sp}", f"leaf{leaf}")]
        for u, v in edges:
            info = self.link((u, v))
            G.add_edge(u, v, capacity=info.capacity, latency=info.latency, kind=info.kind)
        for n in G.nodes:
            if not isinstance(n, int):
                G.nodes[n]["kind"] = "".join(c for c in n if c.isalpha())
        return G


class Explicit(Topology):
    """A user-described graph: `[[nodes]]` (name, kind = "gpu" | "switch") and
    `[[links]]` (a, b, bandwidth_gbps, latency_us, kind, duplex = true)."""

    def __init__(self, spec: TopologySpec, data: dict[str, Any], device: Device, path: str):
        self.name, self.description, self.device = spec.name, spec.description, device
        self.gpus_per_node = spec.gpus_per_node
        G = nx.DiGraph()
        gpus: list[str] = []
        for i, node in enumerate(data.get("nodes", [])):
            name = node.get("name")
            kind = node.get("kind", "switch")
            if not isinstance(name, str) or kind not in ("gpu", "switch"):
                raise bad(f"nodes[{i}]", node, "each node needs name = \"...\" and kind = \"gpu\" or \"switch\"", f"fix {path}")
            G.add_node(name, kind=kind)
            if kind == "gpu":
                gpus.append(name)
        for i, l in enumerate(data.get("links", [])):
            a, b = l.get("a"), l.get("b")
            for end in (a, b):
                if end not in G:
                    raise bad(f"links[{i}].a/b", end, "unknown node in a link", f"declare it in [[nodes]] of {path}")
            bw = l.get("bandwidth_gbps", 0)
            if not isinstance(bw, (int, float)) or bw <= 0:
                raise bad(f"links[{i}].bandwidth_gbps", bw, "bandwidth must be positive", f"fix {path}")
            lat = l.get("latency_us", 1.0)
            if not isinstance(lat, (int, float)) or lat < 0:
                raise bad(f"links[{i}].latency_us", lat, "latency must be zero or positive", f"fix {path}")
            eff = l.get("efficiency", 1.0)
            attrs = dict(capacity=gbps_to_bytes_per_s(bw) * eff, latency=lat * US, kind=l.get("kind", "link"))
            G.add_edge(a, b, **attrs)
            if l.get("duplex", True):
                G.add_edge(b, a, **attrs)
        if not gpus:
            raise bad("nodes", [], "an explicit topology needs at least one node with kind = \"gpu\"", f"add them to {path}")
        for gname in gpus:
            others = [g for g in gpus if g != gname]
            if others and not any(nx.has_path(G, gname, o) for o in others[:1]):
                raise bad("nodes", gname, "this GPU is not connected to the others", f"add a link to it in {path}")
        # relabel GPUs to ints 0..N-1 in declaration order
        mapping = {g: i for i, g in enumerate(gpus)}
        self.gpu_names = gpus
        self._G = nx.relabel_nodes(G, mapping)
        self.num_gpus = len(gpus)
        self._routes: dict[tuple[int, int], tuple[Link, ...]] = {}

    @property
    def graph(self) -> nx.DiGraph:  # type: ignore[override]
        return self._G

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        key = (src, dst)
        if key not in self._routes:
            try:
                path = nx.shortest_path(self._G, src, dst, weight="latency")
            except nx.NetworkXNoPath:
                raise SimtrainError(
                    f"topology {self.name!r}: no route from GPU {self.gpu_names[src]} to {self.gpu_names[dst]}; add links that connect them"
                ) from None
            self._routes[key] = tuple(zip(path[:-1], path[1:]))
        return self._routes[key]

    def link(self, edge: Link) -> LinkInfo:
        d = self._G.edges[edge]
        return LinkInfo(d["capacity"], d["latency"], d["kind"])


BUILDERS = ("fat-tree", "explicit")


def load_topology(source: str, num_gpus: int, device_override: str = "") -> Topology:
    """Build topology `source` (topologies/ name or path) sized for `num_gpus` accelerators."""
    path = resolve_path(source, "topologies", "topology", "cluster.topology")
    data = read_toml(path, "cluster.topology")
    return topology_from_dict(data, num_gpus, device_override, str(path))


def topology_from_dict(data: dict[str, Any], num_gpus: int, device_override: str = "", path: str = "topology") -> Topology:
    sections = {"nvlink": NVLinkSpec, "nic": NICSpec, "fabric": FabricSpec}
    top = {k: v for k, v in data.items() if k not in sections and k not in ("nodes", "links")}
    kind = top.get("kind", "fat-tree")
    extra = [k for k in top if k not in TopologySpec.__dataclass_fields__]
    if kind not in BUILDERS:
        from simtrain import topology_ext  # noqa: F401  (registers more kinds when present)

        if kind not in EXTRA_BUILDERS:
            raise bad("kind", kind, f"unknown topology kind in {path}", f"use one of {', '.join(list(BUILDERS) + list(EXTRA_BUILDERS))}")
        return EXTRA_BUILDERS[kind](data, num_gpus, device_override, path)
    if extra:
        raise SimtrainError(f"unknown key {extra[0]} in topology {path}: valid keys are {', '.join(TopologySpec.__dataclass_fields__)}, [nvlink], [nic], [fabric]")
    spec = parse_dataclass(TopologySpec, top, "topology")
    device = get_device(device_override or spec.device, "cluster.device" if device_override else f"{path}: device")
    if num_gpus < 1:
        raise bad("cluster.gpus", num_gpus, "need at least one GPU", "set cluster.gpus or the parallel sizes")
    if kind == "explicit":
        return Explicit(spec, data, device, path)
    parts = {name: parse_dataclass(cls, data.get(name, {}), name) for name, cls in sections.items()}
    for name, obj in parts.items():
        for f, v in vars(obj).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 and f != "latency_us":
                raise bad(f"{name}.{f}", v, "must be positive", f"fix {path}")
    return FatTree(spec, parts["nvlink"], parts["nic"], parts["fabric"], num_gpus, device)


EXTRA_BUILDERS: dict[str, Any] = {}
