"""Fat trees (`kind = "fat-tree"`): NVSwitch nodes (every GPU one NVLink port pair to the
node's switch) plus one NIC per GPU into a two- or three-tier fabric (leaf / spine / core),
rail-optimized (GPU i of every node on leaf i of its scalable unit) or classic (a node's
NICs on one leaf), with an oversubscription ratio per tier. Routing between leaves is
either "adaptive" (InfiniBand adaptive routing as on DGX SuperPODs: each flow is spread
evenly over all equal-cost uplinks, see `route_load`) or "ecmp" (a hash of (src, dst)
picks one equal-cost path per flow, so flows can collide on a spine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import networkx as nx

from simtrain.hardware.devices import Device
from simtrain.hardware.topology import Link, LinkInfo, Topology, TopologySpec, check_link_spec, topology_spec
from simtrain.scenario.errors import bad
from simtrain.scenario.fields import parse_dataclass
from simtrain.scenario.units import US, gbps_to_bytes_per_s

ROUTINGS = ("adaptive", "ecmp")


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
    spines: int = 16  # spine switches (per pod with 3 tiers); every leaf has one uplink to each
    oversubscription: float = 1.0  # leaf tier: leaf downlink bandwidth / leaf uplink bandwidth
    latency_us: float = 0.5  # leaf <-> spine hop (and spine <-> core hop)
    tiers: int = 2  # 2: leaf/spine; 3: leaf/spine/core
    nodes_per_pod: int = 0  # 3 tiers: nodes under one set of spines (a multiple of nodes_per_leaf)
    cores: int = 16  # 3 tiers: core switches; spine j of every pod uplinks to core plane j
    spine_oversubscription: float = 1.0  # spine tier: spine downlink bandwidth / spine uplink bandwidth
    routing: str = "adaptive"  # "adaptive" (InfiniBand AR: even spread over equal-cost uplinks) or "ecmp"



class FatTree(Topology):
    """NVSwitch nodes plus a rail-optimized or classic fat tree of 2 or 3 tiers.

    Sizing (hardware, independent of how many GPUs the job uses): a leaf has `down`
    NIC-facing ports (rail-optimized: `nodes_per_leaf`, one per node of the scalable unit;
    classic: `nodes_per_leaf * gpus_per_node`) and uplinks worth down * NIC / oversubscription,
    split evenly over the `spines` of its pod. With 3 tiers a pod is `nodes_per_pod`
    nodes under one set of spines; spine j of every pod uplinks to core plane j
    (`cores / spines` cores), worth its downlink bandwidth / spine_oversubscription.
    Equal-cost paths between two leaves: one per spine (same pod) or one per core
    (different pods).
    """

    def __init__(self, spec: TopologySpec, nvlink: NVLinkSpec, nic: NICSpec, fabric: FabricSpec, num_gpus: int, device: Device):
        self.name, self.description = spec.name, spec.description
        self.spec, self.nvlink, self.nic, self.fabric = spec, nvlink, nic, fabric
        self.device = device
        self.gpus_per_node = g = spec.gpus_per_node
        self.num_gpus = num_gpus
        self.num_nodes = math.ceil(num_gpus / g)
        self.adaptive = fabric.routing == "adaptive"
        self._nvl = LinkInfo(gbps_to_bytes_per_s(nvlink.bandwidth_gbps) * nvlink.efficiency, nvlink.latency_us * US, "nvlink")
        nic_bw = gbps_to_bytes_per_s(nic.bandwidth_gbps) * nic.efficiency
        self._nic = LinkInfo(nic_bw, nic.latency_us * US, "nic")
        leaves_per_unit = g if fabric.rail_optimized else 1  # leaves per group of nodes_per_leaf nodes
        self.num_leaves = math.ceil(self.num_nodes / fabric.nodes_per_leaf) * leaves_per_unit
        down_ports = fabric.nodes_per_leaf * (1 if fabric.rail_optimized else g)
        self.three_tier = fabric.tiers == 3
        pod_nodes = fabric.nodes_per_pod if self.three_tier else max(self.num_nodes, 1)
        self.nodes_per_pod = pod_nodes
        self.leaves_per_pod = (pod_nodes // fabric.nodes_per_leaf) * leaves_per_unit if self.three_tier else self.num_leaves
        self.num_pods = math.ceil(self.num_nodes / pod_nodes) if self.three_tier else 1
        self.num_spines = fabric.spines if self.num_leaves > 1 else 0  # per pod
        self.cores_per_plane = fabric.cores // fabric.spines if self.three_tier else 0
        self.num_cores = fabric.cores if self.three_tier and self.num_pods > 1 else 0
        # leaf uplinks: down * NIC / o1 in total, one link to each spine of the pod
        leaf_up = down_ports * nic_bw / fabric.oversubscription
        per_spine = leaf_up / max(fabric.spines, 1)
        self._up = LinkInfo(per_spine, fabric.latency_us * US, "spine")
        # spine uplinks (3 tiers): its downlinks (one per leaf of the pod) / o2, over its core plane
        spine_up = self.leaves_per_pod * per_spine / fabric.spine_oversubscription if self.three_tier else 0.0
        self._core = LinkInfo(spine_up / max(self.cores_per_plane, 1), fabric.latency_us * US, "core")
        self._nic_per_gpu = nic_bw
        self._build_link_lists()

    def nvlink_domains(self) -> list[int]:
        """A node's GPUs share its NVSwitch (a GB200 NVL72 rack is one 72-GPU node)."""
        g = self.gpus_per_node
        return [gpu // g for gpu in range(self.num_gpus)]

    # --- naming -------------------------------------------------------------------
    def leaf_of(self, gpu: int) -> int:
        node, local = divmod(gpu, self.gpus_per_node)
        if self.fabric.rail_optimized:
            return (node // self.fabric.nodes_per_leaf) * self.gpus_per_node + local
        return node // self.fabric.nodes_per_leaf

    def pod_of_leaf(self, leaf: int) -> int:
        return leaf // self.leaves_per_pod if self.three_tier else 0

    def spine_name(self, pod: int, k: int) -> str:
        return f"spine{pod}_{k}" if self.three_tier else f"spine{k}"

    def _build_link_lists(self) -> None:
        """Per-leaf and per-pod lists of (link, fraction) for adaptive routing."""
        S, C = self.num_spines, self.cores_per_plane
        self._leaf_up: list[list[tuple[Link, float]]] = []
        self._leaf_down: list[list[tuple[Link, float]]] = []
        for leaf in range(self.num_leaves):
            pod, name = self.pod_of_leaf(leaf), f"leaf{leaf}"
            self._leaf_up.append([((name, self.spine_name(pod, k)), 1.0 / S) for k in range(S)])
            self._leaf_down.append([((self.spine_name(pod, k), name), 1.0 / S) for k in range(S)])
        # Aggregated form: perfect adaptive spreading loads the S equal-cost uplinks of a
        # leaf identically, so for max-min fairness they act as one link of S times the
        # capacity (exact while every flow spreads evenly; what-ifs that touch a single
        # spine link use the detailed lists above).
        self._leaf_up_agg = [[((f"leaf{leaf}", "spines*"), 1.0)] for leaf in range(self.num_leaves)]
        self._leaf_down_agg = [[(("spines*", f"leaf{leaf}"), 1.0)] for leaf in range(self.num_leaves)]
        self._pod_up_agg = [[((f"pod{pod}", "cores*"), 1.0)] for pod in range(self.num_pods)] if self.num_cores else []
        self._pod_down_agg = [[(("cores*", f"pod{pod}"), 1.0)] for pod in range(self.num_pods)] if self.num_cores else []
        self._pod_up: list[list[tuple[Link, float]]] = []
        self._pod_down: list[list[tuple[Link, float]]] = []
        if self.num_cores:
            f = 1.0 / (S * C)
            for pod in range(self.num_pods):
                ups, downs = [], []
                for k in range(S):
                    sp = self.spine_name(pod, k)
                    for m in range(C):
                        core = f"core{k * C + m}"
                        ups.append(((sp, core), f))
                        downs.append(((core, sp), f))
                self._pod_up.append(ups)
                self._pod_down.append(downs)

    @staticmethod
    def _hash(src: int, dst: int) -> int:
        return src * 2654435761 + dst * 40503

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        """One path: NVLink inside a node, else the ECMP-hashed path through the fabric."""
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
        # ECMP: a deterministic hash of the flow picks one of the equal-cost paths
        h = self._hash(src, dst)
        k = h % self.num_spines
        ps, pd = self.pod_of_leaf(ls), self.pod_of_leaf(ld)
        sp_s, sp_d = self.spine_name(ps, k), self.spine_name(pd, k)
        if ps == pd:
            return ((src, a), (a, sp_s), (sp_s, b), (b, dst))
        core = f"core{k * self.cores_per_plane + (h // self.num_spines) % self.cores_per_plane}"
        return ((src, a), (a, sp_s), (sp_s, core), (core, sp_d), (sp_d, b), (b, dst))

    def route_load(self, src: int, dst: int, detailed: bool = False) -> list[tuple[Link, float]]:
        """Adaptive routing: the flow is split evenly over every equal-cost uplink (1/S
        on each leaf-spine link, 1/(S*C) on each spine-core link), which by default is
        represented by one aggregated link per leaf (and pod) tier; ECMP: `route`."""
        if not self.adaptive or src == dst:
            return [(e, 1.0) for e in self.route(src, dst)]
        if src // self.gpus_per_node == dst // self.gpus_per_node:
            return [(e, 1.0) for e in self.route(src, dst)]
        ls, ld = self.leaf_of(src), self.leaf_of(dst)
        a, b = f"leaf{ls}", f"leaf{ld}"
        if ls == ld:
            return [((src, a), 1.0), ((a, dst), 1.0)]
        ps, pd = self.pod_of_leaf(ls), self.pod_of_leaf(ld)
        if detailed:
            mid = [] if ps == pd else self._pod_up[ps] + self._pod_down[pd]
            return [((src, a), 1.0)] + self._leaf_up[ls] + mid + self._leaf_down[ld] + [((b, dst), 1.0)]
        mid = [] if ps == pd else self._pod_up_agg[ps] + self._pod_down_agg[pd]
        return [((src, a), 1.0)] + self._leaf_up_agg[ls] + mid + self._leaf_down_agg[ld] + [((b, dst), 1.0)]

    def link(self, edge: Link) -> LinkInfo:
        u, v = edge
        if isinstance(u, int) or isinstance(v, int):
            other = v if isinstance(u, int) else u
            return self._nvl if other[0] == "n" else self._nic  # "nvsw..." or "leaf..."
        if u == "spines*" or v == "spines*":  # a leaf's S uplinks as one (adaptive routing)
            return LinkInfo(self._up.capacity * self.num_spines, self._up.latency, "spine")
        if u == "cores*" or v == "cores*":  # a pod's S*C spine-core links as one
            return LinkInfo(self._core.capacity * self.num_spines * self.cores_per_plane, self._core.latency, "core")
        if u[0] == "c" or v[0] == "c":  # "core..."
            return self._core
        return self._up

    def route_latency(self, src: int, dst: int) -> float:
        """Sum of hop latencies along `route`, by case, without building the path."""
        if src == dst:
            return 0.0
        g = self.gpus_per_node
        if src // g == dst // g:
            return 2 * self._nvl.latency
        ls, ld = self.leaf_of(src), self.leaf_of(dst)
        if ls == ld:
            return 2 * self._nic.latency
        if self.pod_of_leaf(ls) == self.pod_of_leaf(ld):
            return 2 * self._nic.latency + 2 * self._up.latency
        return 2 * self._nic.latency + 2 * self._up.latency + 2 * self._core.latency

    def _fabric_edges(self) -> list[Link]:
        edges: list[Link] = []
        for leaf in range(self.num_leaves):
            for (e, _f) in self._leaf_up[leaf]:
                edges += [e, (e[1], e[0])]
        for ups in self._pod_up:
            for (e, _f) in ups:
                edges += [e, (e[1], e[0])]
        return edges

    @cached_property
    def graph(self) -> nx.DiGraph:
        G = nx.DiGraph()
        for gpu in range(self.num_gpus):
            G.add_node(gpu, kind="gpu", device=self.device.name)
        edges = []
        for gpu in range(self.num_gpus):
            sw, leaf = f"nvsw{gpu // self.gpus_per_node}", f"leaf{self.leaf_of(gpu)}"
            edges += [(gpu, sw), (sw, gpu), (gpu, leaf), (leaf, gpu)]
        edges += self._fabric_edges()
        for u, v in edges:
            info = self.link((u, v))
            G.add_edge(u, v, capacity=info.capacity, latency=info.latency, kind=info.kind)
        for n in G.nodes:
            if not isinstance(n, int):
                G.nodes[n]["kind"] = "".join(c for c in n if c.isalpha())
        return G

    def tier_bandwidth(self) -> list[tuple[str, float]]:
        """Per GPU per direction: NVLink, NIC, its share of leaf uplinks (NIC / o1) and,
        with 3 tiers, of spine uplinks (NIC / (o1 * o2))."""
        f = self.fabric
        out = [("nvlink", self._nvl.capacity), ("nic", self._nic.capacity), ("leaf uplink", self._nic_per_gpu / f.oversubscription)]
        if self.three_tier:
            out.append(("spine uplink", self._nic_per_gpu / (f.oversubscription * f.spine_oversubscription)))
        return out

    def bisection_bandwidth(self) -> float:
        """Max-flow between the rank-order halves on a reduced graph: every node that lies
        wholly in one half is folded into the super-source (or sink) with one edge per leaf
        worth the sum of its NICs on that leaf (its NVSwitch is a dead end there); only a
        node that straddles the halves keeps its GPUs and NVSwitch. Exact for this graph,
        and small: leaves + spines + cores."""
        n = self.num_gpus
        half = n // 2
        if half == 0:
            return 0.0
        g = self.gpus_per_node
        H = nx.DiGraph()
        S, T = ("__source__",), ("__sink__",)

        def add(u, v, c):
            if H.has_edge(u, v):
                H[u][v]["capacity"] += c
            else:
                H.add_edge(u, v, capacity=c)

        for node in range(self.num_nodes):
            gpus = range(node * g, min((node + 1) * g, n))
            side = {0 if x < half else (1 if x < 2 * half else 2) for x in gpus}
            if side == {0} or side == {1}:
                for x in gpus:
                    leaf = f"leaf{self.leaf_of(x)}"
                    if side == {0}:
                        add(S, leaf, self._nic.capacity)
                    else:
                        add(leaf, T, self._nic.capacity)
                continue
            sw = f"nvsw{node}"
            for x in gpus:
                leaf = f"leaf{self.leaf_of(x)}"
                for u, v in ((x, sw), (sw, x), (x, leaf), (leaf, x)):
                    add(u, v, self.link((u, v)).capacity)
                if x < half:
                    H.add_edge(S, x)
                elif x < 2 * half:
                    H.add_edge(x, T)
        for u, v in self._fabric_edges():
            add(u, v, self.link((u, v)).capacity)
        if S not in H or T not in H:
            return 0.0
        return float(nx.maximum_flow_value(H, S, T))


def build_fat_tree(data: dict[str, Any], num_gpus: int, device_override: str = "", path: str = "topology") -> FatTree:
    sections = {"nvlink": NVLinkSpec, "nic": NICSpec, "fabric": FabricSpec}
    spec, device = topology_spec(data, "fat-tree", tuple(sections), num_gpus, device_override, path)
    for name in sections:
        if name in data and not isinstance(data[name], dict):
            raise bad(name, data[name], "expected a table", f"write [{name}] followed by key = value lines in {path}")
    parts = {name: parse_dataclass(cls, data.get(name, {}), name) for name, cls in sections.items()}
    for name, obj in parts.items():
        for f, v in vars(obj).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 and f not in ("latency_us", "nodes_per_pod"):
                raise bad(f"{name}.{f}", v, "must be positive", f"fix {path}")
        check_link_spec(obj, name, path)
    fab = parts["fabric"]
    if fab.routing not in ROUTINGS:
        raise bad("fabric.routing", fab.routing, "unknown routing", f"use one of {', '.join(ROUTINGS)}")
    if fab.tiers not in (2, 3):
        raise bad("fabric.tiers", fab.tiers, "a fat tree here has 2 or 3 tiers", "use tiers = 2 (leaf/spine) or 3 (leaf/spine/core)")
    if fab.tiers == 3:
        if fab.nodes_per_pod <= 0 or fab.nodes_per_pod % fab.nodes_per_leaf:
            raise bad("fabric.nodes_per_pod", fab.nodes_per_pod, f"with 3 tiers it must be a positive multiple of nodes_per_leaf = {fab.nodes_per_leaf}", f"fix {path}")
        if fab.cores % fab.spines:
            raise bad("fabric.cores", fab.cores, f"must be a multiple of spines = {fab.spines} (one core plane per spine)", f"fix {path}")
    return FatTree(spec, parts["nvlink"], parts["nic"], fab, num_gpus, device)
