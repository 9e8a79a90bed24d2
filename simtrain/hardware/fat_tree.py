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

from simtrain.hardware import fat_tree_cut
from simtrain.hardware.devices import Device
from simtrain.hardware.topology import Link, LinkInfo, Topology, TopologySpec, check_link_spec, topology_spec
from simtrain.scenario.errors import bad

_MEMO_MAX = 1 << 17  # entries per route memo (cleared when full: bounds its memory on huge trees)
from simtrain.scenario.fields import parse_dataclass
from simtrain.scenario.units import US, gbps_to_bytes_per_s

ROUTINGS = ("adaptive", "ecmp")


# Defaults for a key a topology file leaves out: topologies/dgx-h100.toml's values, whose
# comments give their sources (NVLink 4 and NDR datasheets, nccl-tests bus bandwidths) or
# say they are assumed (latencies, spine count).
@dataclass(frozen=True)
class NVLinkSpec:
    bandwidth_gbps: float = 3600.0  # per GPU per direction
    latency_us: float = 1.0  # per hop (GPU -> NVSwitch or NVSwitch -> GPU)
    efficiency: float = 0.8  # achievable fraction of the wire rate


@dataclass(frozen=True)
class NICSpec:
    bandwidth_gbps: float = 400.0  # per NIC per direction
    latency_us: float = 2.5  # GPU -> leaf, including NIC and PCIe
    efficiency: float = 0.92


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
        self._names: dict[int, str] = {}
        self._per_leaf: dict[int, tuple] = {}
        self._per_pod: dict[int, tuple] = {}
        self._rl: dict[tuple[int, int], list[tuple[Link, float]]] = {}  # (src, dst) -> route_load (default detail)
        self._rlat: dict[tuple[int, int], float] = {}  # (src, dst) -> route_latency

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

    def _leaf_name(self, leaf: int) -> str:
        name = self._names.get(leaf)
        if name is None:
            name = self._names[leaf] = f"leaf{leaf}"
        return name

    def _leaf_lists(self, leaf: int) -> tuple:
        """(detailed up, detailed down, aggregated up, aggregated down) (link, fraction)
        lists of one leaf for adaptive routing, built on first use (a 1M-GPU tree has
        32,768 leaves; a run touches a few)."""
        hit = self._per_leaf.get(leaf)
        if hit is None:
            S, pod, name = self.num_spines, self.pod_of_leaf(leaf), self._leaf_name(leaf)
            hit = self._per_leaf[leaf] = (
                [((name, self.spine_name(pod, k)), 1.0 / S) for k in range(S)],
                [((self.spine_name(pod, k), name), 1.0 / S) for k in range(S)],
                # Aggregated form: perfect adaptive spreading loads the S equal-cost uplinks
                # of a leaf identically, so for max-min fairness they act as one link of S
                # times the capacity (exact while every flow spreads evenly; what-ifs that
                # touch a single spine link use the detailed lists).
                [((name, "spines*"), 1.0)],
                [(("spines*", name), 1.0)])
        return hit

    def _pod_lists(self, pod: int) -> tuple:
        """(detailed up, detailed down, aggregated up, aggregated down) of one pod's
        spine-core links (3 tiers with more than one pod)."""
        hit = self._per_pod.get(pod)
        if hit is None:
            S, C = self.num_spines, self.cores_per_plane
            f = 1.0 / (S * C)
            ups, downs = [], []
            for k in range(S):
                sp = self.spine_name(pod, k)
                for m in range(C):
                    core = f"core{k * C + m}"
                    ups.append(((sp, core), f))
                    downs.append(((core, sp), f))
            hit = self._per_pod[pod] = (ups, downs, [((f"pod{pod}", "cores*"), 1.0)], [(("cores*", f"pod{pod}"), 1.0)])
        return hit

    # --- symmetry --------------------------------------------------------------------
    def period(self) -> int | None:
        """Adaptive routing treats every scalable unit (2 tiers) or pod (3 tiers) alike, so
        shifting ranks by one of them is an automorphism when the cluster is whole units
        (pods) of whole nodes. ECMP hashes flows by rank: no period."""
        unit = self.gpus_per_node * (self.nodes_per_pod if self.three_tier else self.fabric.nodes_per_leaf)
        if not self.adaptive or self.num_gpus % unit:
            return None
        return unit

    def orbit_link(self, link: Link, period: int) -> Link:
        g = self.gpus_per_node
        u, v = link
        if isinstance(u, int) or isinstance(v, int):  # GPU <-> NVSwitch or leaf
            gpu, sw = (u, v) if isinstance(u, int) else (v, u)
            x = gpu % period
            other = f"nvsw{x // g}" if sw[0] == "n" else self._leaf_name(self.leaf_of(x))
            return (x, other) if isinstance(u, int) else (other, x)
        leaves = period // (g * self.fabric.nodes_per_leaf) * (g if self.fabric.rail_optimized else 1)
        pods = period // (g * self.nodes_per_pod) if self.three_tier else 1

        def canon(name: str) -> str:
            if name.endswith("*"):
                return name  # spines*, cores*: every leaf's (pod's) own aggregate link
            if name.startswith("leaf"):
                return self._leaf_name(int(name[4:]) % leaves)
            if name.startswith("pod"):
                return f"pod{int(name[3:]) % pods}"
            if name.startswith("spine") and self.three_tier:  # spine{pod}_{k}
                pod, _, k = name[5:].partition("_")
                return f"spine{int(pod) % pods}_{k}"
            return name  # spines*, cores*, spine k (2 tiers), core m: shared by every unit
        return (canon(u), canon(v))

    def has_link(self, u, v) -> bool:
        """Arithmetic on the names, without building the graph (1M-device trees)."""
        if isinstance(u, int) or isinstance(v, int):
            gpu, sw = (u, v) if isinstance(u, int) else (v, u)
            if isinstance(sw, int) or not 0 <= gpu < self.num_gpus:
                return False
            return sw == f"nvsw{gpu // self.gpus_per_node}" or sw == f"leaf{self.leaf_of(gpu)}"
        low, high = (u, v) if u.startswith("leaf") or (u.startswith("spine") and v.startswith("core")) else (v, u)
        if low.startswith("leaf") and low[4:].isdigit() and int(low[4:]) < self.num_leaves:
            pod = self.pod_of_leaf(int(low[4:]))
            return any(high == self.spine_name(pod, k) for k in range(self.num_spines))
        if self.num_cores and low.startswith("spine") and high.startswith("core") and high[4:].isdigit():
            pod, _, k = low[5:].partition("_")
            if not (pod.isdigit() and k.isdigit()) or int(pod) >= self.num_pods or int(k) >= self.num_spines:
                return False
            return int(k) * self.cores_per_plane <= int(high[4:]) < (int(k) + 1) * self.cores_per_plane
        return False

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

    def route_load(self, src: int, dst: int, detailed=False) -> list[tuple[Link, float]]:
        """`_route_load`, memoized for the default detail (a sweep's layouts load the same
        pairs again and again: ~123,000 asks for ~15,000 pairs on the 1,024-GPU sweep
        benchmark's grid). The list is shared: read it, never change it."""
        if detailed is not False:
            return self._route_load(src, dst, detailed)
        hit = self._rl.get((src, dst))
        if hit is None:
            if len(self._rl) >= _MEMO_MAX:
                self._rl.clear()
            hit = self._rl[(src, dst)] = self._route_load(src, dst)
        return hit

    def _route_load(self, src: int, dst: int, detailed=False) -> list[tuple[Link, float]]:
        """Adaptive routing: the flow is split evenly over every equal-cost uplink (1/S
        on each leaf-spine link, 1/(S*C) on each spine-core link), which by default is
        represented by one aggregated link per leaf (and pod) tier; ECMP: `route`.
        `detailed`: True lists every spine (and core) link; a pair of sets (leaves, pods)
        lists them only for those leaves and pods (the ones a what-if touches): both forms
        are exact for max-min sharing while every flow spreads evenly."""
        if not self.adaptive or src == dst:
            return [(e, 1.0) for e in self.route(src, dst)]
        if src // self.gpus_per_node == dst // self.gpus_per_node:
            return [(e, 1.0) for e in self.route(src, dst)]
        ls, ld = self.leaf_of(src), self.leaf_of(dst)
        a, b = self._leaf_name(ls), self._leaf_name(ld)
        if ls == ld:
            return [((src, a), 1.0), ((a, dst), 1.0)]
        ps, pd = self.pod_of_leaf(ls), self.pod_of_leaf(ld)
        if detailed is True or detailed is False:
            up = down = pup = pdown = 0 if detailed else 2
        else:
            leaves, pods = detailed
            up, down = (0 if ls in leaves else 2), (0 if ld in leaves else 2)
            pup, pdown = (0 if ps in pods else 2), (0 if pd in pods else 2)
        mid = [] if ps == pd else self._pod_lists(ps)[pup] + self._pod_lists(pd)[pdown + 1]
        return [((src, a), 1.0)] + self._leaf_lists(ls)[up] + mid + self._leaf_lists(ld)[down + 1] + [((b, dst), 1.0)]

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
        """Sum of hop latencies along `route`, by case, without building the path (memoized)."""
        hit = self._rlat.get((src, dst))
        if hit is None:
            if len(self._rlat) >= _MEMO_MAX:
                self._rlat.clear()
            hit = self._rlat[(src, dst)] = self._route_latency(src, dst)
        return hit

    def _route_latency(self, src: int, dst: int) -> float:
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
            for (e, _f) in self._leaf_lists(leaf)[0]:
                edges += [e, (e[1], e[0])]
        for pod in range(self.num_pods if self.num_cores else 0):
            for (e, _f) in self._pod_lists(pod)[0]:
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
        """Max-flow between the rank-order halves on a small quotient graph (exact; see
        simtrain.hardware.fat_tree_cut)."""
        return fat_tree_cut.bisection(self)

    def inventory(self) -> dict[str, Any]:
        return fat_tree_cut.inventory(self)


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
