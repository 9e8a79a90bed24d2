"""Explicit graphs (`kind = "explicit"`): `[[nodes]]` and `[[links]]` tables describe any
cluster; routes are shortest paths by latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from simtrain.hardware.devices import Device
from simtrain.hardware.topology import Link, LinkInfo, Topology, TopologySpec, topology_spec
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import parse_dataclass
from simtrain.scenario.units import US, gbps_to_bytes_per_s


@dataclass(frozen=True)
class NodeSpec:
    """One `[[nodes]]` entry of an explicit topology."""

    name: str = ""
    kind: str = "switch"  # "gpu" or "switch"


@dataclass(frozen=True)
class LinkSpec:
    """One `[[links]]` entry: a cable between nodes a and b."""

    a: str = ""
    b: str = ""
    bandwidth_gbps: float = 0.0  # per direction, gigabits/s (required)
    latency_us: float = 1.0
    efficiency: float = 1.0  # achievable fraction of the wire rate
    kind: str = "link"  # free label, e.g. "nvlink", "nic", "spine"
    duplex: bool = True  # false: only a -> b


class Explicit(Topology):
    """A user-described graph: `[[nodes]]` (name, kind = "gpu" | "switch") and
    `[[links]]` (a, b, bandwidth_gbps, latency_us, efficiency, kind, duplex = true).
    GPUs are numbered 0..N-1 in declaration order; routes are shortest paths by latency.
    Every entry is checked: unknown keys, unknown or duplicate nodes, a cable (direction)
    given twice, non-positive bandwidth, negative latency and GPUs that cannot reach every
    other GPU are rejected with one line."""

    def __init__(self, spec: TopologySpec, data: dict[str, Any], device: Device, path: str):
        self.name, self.description, self.device = spec.name, spec.description, device
        self.gpus_per_node = spec.gpus_per_node
        G = nx.DiGraph()
        gpus: list[str] = []
        nodes, links = data.get("nodes", []), data.get("links", [])
        if not isinstance(nodes, list) or not isinstance(links, list):
            raise bad("nodes/links", type(nodes).__name__, "expected arrays of tables", f"write [[nodes]] and [[links]] entries in {path}")
        for i, raw in enumerate(nodes):
            if not isinstance(raw, dict):
                raise bad(f"nodes[{i}]", raw, "expected a table", f"write [[nodes]] entries in {path}")
            node = parse_dataclass(NodeSpec, raw, f"nodes[{i}]")
            if not node.name or node.kind not in ("gpu", "switch"):
                raise bad(f"nodes[{i}]", raw, 'each node needs name = "..." and kind = "gpu" or "switch"', f"fix {path}")
            if node.name in G:
                raise bad(f"nodes[{i}].name", node.name, "declared twice", f"give every node a unique name in {path}")
            G.add_node(node.name, kind=node.kind)
            if node.kind == "gpu":
                gpus.append(node.name)
        if not gpus:
            raise bad("nodes", [], 'an explicit topology needs at least one node with kind = "gpu"', f"add them to {path}")
        for i, raw in enumerate(links):
            if not isinstance(raw, dict):
                raise bad(f"links[{i}]", raw, "expected a table", f"write [[links]] entries in {path}")
            l = parse_dataclass(LinkSpec, raw, f"links[{i}]")
            for end_name, end in (("a", l.a), ("b", l.b)):
                if end not in G:
                    raise bad(f"links[{i}].{end_name}", end, "unknown node in a link", f"declare it in [[nodes]] of {path}")
            if l.a == l.b:
                raise bad(f"links[{i}]", f"{l.a} -> {l.b}", "a link must join two different nodes", f"fix {path}")
            if l.bandwidth_gbps <= 0:
                raise bad(f"links[{i}].bandwidth_gbps", raw.get("bandwidth_gbps"), "bandwidth must be given and positive", f"fix {path}")
            if l.latency_us < 0:
                raise bad(f"links[{i}].latency_us", l.latency_us, "latency must be zero or positive", f"fix {path}")
            if not 0 < l.efficiency <= 1:
                raise bad(f"links[{i}].efficiency", l.efficiency, "must be in (0, 1]", f"fix {path}")
            # a free label, but one a letter off a kind simtrain reads (NVLink domains, the
            # cluster.<kind>_* what-ifs) is a typo that would silently drop them
            near = _typo_of_kind(l.kind)
            if near:
                raise bad(f"links[{i}].kind", l.kind, f"is not {near!r}, the kind simtrain reads for it",
                          f'write kind = "{near}" in {path}, or a label further from it')
            attrs = dict(capacity=gbps_to_bytes_per_s(l.bandwidth_gbps) * l.efficiency, latency=l.latency_us * US, kind=l.kind)
            for u, v in ((l.a, l.b), (l.b, l.a)) if l.duplex else ((l.a, l.b),):
                # a second cable between the same nodes would silently replace the first (the
                # graph holds one edge per direction): refuse it, naming both entries
                if G.has_edge(u, v):
                    raise bad(f"links[{i}]", f"{l.a} -> {l.b}", f"the direction {u} -> {v} is already given by links[{G.edges[u, v]['entry']}]",
                              f"list each cable once in {path} (for parallel cables give one link with their summed bandwidth_gbps)")
                G.add_edge(u, v, entry=i, **attrs)
        if len(gpus) > 1:
            reach = nx.descendants(G, gpus[0]) | {gpus[0]}
            back = nx.ancestors(G, gpus[0]) | {gpus[0]}
            for gname in gpus[1:]:
                if gname not in reach or gname not in back:
                    raise bad("nodes", gname, f"this GPU is not connected to GPU {gpus[0]!r} in both directions", f"add a link to it in {path}")
        # relabel GPUs to ints 0..N-1 in declaration order
        mapping = {g: i for i, g in enumerate(gpus)}
        self.gpu_names = gpus
        self._G = nx.relabel_nodes(G, mapping)
        self.num_gpus = len(gpus)
        self._routes: dict[tuple[int, int], tuple[Link, ...]] = {}

    @property
    def graph(self) -> nx.DiGraph:  # type: ignore[override]
        return self._G

    def nvlink_domains(self) -> list[int] | None:
        """GPUs joined through links of kind "nvlink" (and the switches between them) form
        one domain; None when no link has that kind."""
        nv = nx.Graph((u, v) for u, v, k in self._G.edges(data="kind") if k == "nvlink")
        if nv.number_of_edges() == 0:
            return None
        out = list(range(self.num_gpus, 2 * self.num_gpus))  # a GPU without NVLink: its own domain
        for i, comp in enumerate(nx.connected_components(nv)):
            for n in comp:
                if isinstance(n, int):
                    out[n] = i
        return out

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


def build_explicit(data: dict[str, Any], num_gpus: int, device_override: str = "", path: str = "topology") -> Explicit:
    spec, device = topology_spec(data, "explicit", ("nodes", "links"), num_gpus, device_override, path)
    return Explicit(spec, data, device, path)


READ_KINDS = ("nvlink", "nic", "ici")  # link kinds simtrain acts on (simtrain.hardware.tiers)


def _typo_of_kind(kind: str) -> str | None:
    """The kind simtrain reads that `kind` misspells: the same but for letter case, or one
    letter added, dropped or changed in a label of four letters or more ("nvlnk", "nics");
    None for a kind read as such or a label of its own ("link", "spine", "pcie")."""
    if kind in READ_KINDS or kind == "link":
        return None
    for k in READ_KINDS:
        if kind.lower() == k or (len(kind) >= 4 and _one_edit(kind.lower(), k)):
            return k
    return None


def _one_edit(a: str, b: str) -> bool:
    """a and b differ by exactly one inserted, deleted or replaced letter."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))
