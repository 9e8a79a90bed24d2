"""Fat-tree summaries without the device graph: what `simtrain topology` prints, in closed
form (counts) and on a small quotient graph (bisection), so that a 1,048,576-GPU tree
summarizes in well under a second.

Bisection bandwidth (definition in simtrain.hardware.topology): max-flow from the first
half of the devices (rank order) to the second. Every node (server) that lies wholly in
one half is folded into the super-source (or sink) with one edge per leaf worth the sum
of its NICs there (its NVSwitch is a dead end). Only the nodes that straddle the halves,
hold the odd device out, or are not full keep their GPUs and NVSwitch. Then the network is
divided by its symmetries, which leaves the max-flow value unchanged (averaging a maximum
flow over a symmetry group gives a symmetric one of the same value; a flow on the
quotient spreads back evenly): leaves of one pod with the same capacities to the source
and the sink are permuted by automorphisms, so they become one node; so are pods with
the same leaf make-up, the spines of one pod (together with their core planes) and all
cores. A quotient edge carries the summed capacity of its orbit. Tests check the result
against max-flow on the full graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

GB = 1e9


def inventory(ft) -> dict[str, Any]:
    """Switches by kind, cables by kind (count, capacities in bytes/s) and hosts."""
    switches = {"nvsw": ft.num_nodes, "leaf": ft.num_leaves}
    if ft.num_spines:
        switches["spine"] = ft.num_spines * (ft.num_pods if ft.three_tier else 1)
    if ft.num_cores:
        switches["core"] = ft.num_cores
    links = {"nvlink": (ft.num_gpus, [ft.link((0, "nvsw0")).capacity]),
             "nic": (ft.num_gpus, [ft._nic.capacity])}
    if ft.num_spines:
        links["spine"] = (ft.num_leaves * ft.num_spines, [ft._up.capacity])
    if ft.num_cores:
        links["core"] = (ft.num_pods * ft.num_spines * ft.cores_per_plane, [ft._core.capacity])
    return {"switches": switches, "links": links, "hosts": ft.num_nodes}


def bisection(ft) -> float:
    import networkx as nx

    n, g = ft.num_gpus, ft.gpus_per_node
    half = n // 2
    if half == 0:
        return 0.0

    def side(x: int) -> int:
        return 0 if x < half else (1 if x < 2 * half else 2)

    special = set()  # nodes kept at device level
    for x in (half - 1, half, 2 * half - 1, 2 * half, n - 1):
        if 0 <= x < n:
            node = x // g
            gpus = range(node * g, min((node + 1) * g, n))
            if len(gpus) < g or len({side(y) for y in gpus}) > 1 or side(x) == 2:
                special.add(node)
    npl = ft.fabric.nodes_per_leaf
    rail = ft.fabric.rail_optimized
    per_node = 1 if rail else g  # NICs a full node puts on each of its leaves
    nic = ft._nic.capacity
    full0 = half // g  # nodes [0, full0) lie in the first half
    lo1, hi1 = -(-half // g), (2 * half) // g  # nodes [lo1, hi1) in the second
    units = -(-ft.num_nodes // npl)
    special_leaves: set[int] = set()
    for node in special:
        for x in range(node * g, min((node + 1) * g, n)):
            special_leaves.add(ft.leaf_of(x))

    def count(u: int, a: int, b: int) -> int:  # regular nodes of unit u in [a, b)
        lo, hi = max(u * npl, a), min((u + 1) * npl, b)
        return max(0, hi - lo) - sum(1 for m in special if lo <= m < hi)

    caps: dict[int, tuple[float, float]] = {}  # leaf -> (capacity from S, to T)
    for u in range(units):
        c0, c1 = count(u, 0, full0) * per_node * nic, count(u, lo1, hi1) * per_node * nic
        for leaf in (range(u * g, (u + 1) * g) if rail else (u,)):
            if leaf < ft.num_leaves:
                caps[leaf] = (c0, c1)
    pods: dict[int, Counter] = {}
    for leaf, c in caps.items():
        if leaf not in special_leaves:
            pods.setdefault(ft.pod_of_leaf(leaf), Counter())[c] += 1
    pod_class: dict[int, Any] = {}
    for pod in range(ft.num_pods if ft.three_tier else 1):
        odd = any(ft.pod_of_leaf(l) == pod for l in special_leaves)
        pod_class[pod] = ("pod", pod) if odd else ("make-up", tuple(sorted(pods.get(pod, Counter()).items())))
    H = nx.DiGraph()
    S, T = ("__source__",), ("__sink__",)

    def add(u, v, c) -> None:
        if c <= 0:
            return
        if H.has_edge(u, v):
            H[u][v]["capacity"] += c
        else:
            H.add_edge(u, v, capacity=c)

    up = ft._up.capacity * ft.num_spines  # a leaf's uplinks, all spines together
    for leaf, (c0, c1) in caps.items():
        pc = pod_class[ft.pod_of_leaf(leaf)]
        node = ("leaf", leaf) if leaf in special_leaves else ("leaves", pc, c0, c1)
        add(S, node, c0)
        add(node, T, c1)
        add(node, ("spines", pc), up)
        add(("spines", pc), node, up)
    if ft.num_cores:
        core = ft._core.capacity * ft.num_spines * ft.cores_per_plane  # a pod's spine-core links
        for pod, pc in pod_class.items():
            add(("spines", pc), ("cores",), core)
            add(("cores",), ("spines", pc), core)
    nvl = ft.link((0, "nvsw0")).capacity
    for node in special:
        sw = ("nvsw", node)
        for x in range(node * g, min((node + 1) * g, n)):
            leaf = ("leaf", ft.leaf_of(x))
            for a, b, c in ((x, sw, nvl), (sw, x, nvl), (x, leaf, nic), (leaf, x, nic)):
                add(a, b, c)
            if side(x) == 0:
                H.add_edge(S, x)  # no capacity attribute: infinite
            elif side(x) == 1:
                H.add_edge(x, T)
    if S not in H or T not in H:
        return 0.0
    return float(nx.maximum_flow_value(H, S, T))
