"""Collective algorithms as phases of concurrent flows over the topology.

A collective over a group of n ranks with buffer size S bytes (nccl-tests convention:
all-reduce and broadcast move an S-byte buffer; reduce-scatter's input and all-gather's
output are S bytes; all-to-all sends S bytes from each rank) is a list of `Phase`s. A
phase is a set of flows that all carry the same bytes and start together, plus the
number of sequential latency steps it pays. Its time on idle links is
    steps * alpha + bytes / (bottleneck per-flow bandwidth),
alpha = the largest route latency among its flows.

Ring (Patarasuk & Yuan 2009; NCCL's ring): all-reduce is 2(n-1) steps of S/n bytes to the
ring neighbour; every neighbour link carries the same traffic at once, so the phase is one
bundle of n flows of 2(n-1)/n*S bytes with 2(n-1) latency steps:
    T = 2(n-1)/n * S/B + 2(n-1)*alpha.
Reduce-scatter and all-gather are half of it: (n-1)/n * S/B + (n-1)*alpha.
Hierarchical all-reduce (e.g. Horovod/NCCL's two-level scheme for g ranks per node on k
nodes): ring reduce-scatter inside each node, ring all-reduce of the S/g shard across
nodes (one ring per local rank), ring all-gather inside the node:
    T = 2(g-1)/g * S/B_intra + 2(g-1)*a_intra + 2(k-1)/k * S/(g*B_inter) + 2(k-1)*a_inter.
Double binary tree (Sanders, Speck & Traeff 2009; NCCL >= 2.4, src/graph/trees.cc): two
binary trees over the nodes, each reducing then broadcasting half of the buffer, pipelined.
Tree 0 is NCCL's `ncclGetBtree` (leaves are the odd ranks); tree 1 is its mirror
(r -> n-1-r) when n is even or its shift by one (r -> r+1 mod n) when n is odd, so a node
that is inner in one tree is a leaf in the other. Inside a node the GPUs form a chain
(NCCL's intra-node tree is a chain); tree 0 enters a node at its first GPU, tree 1 at its
last (two channels on two NICs). A rank then sends and receives S/2 to/from its parent in
each tree and S/2 to/from each child: on a flat network its link carries at most
4 * S/2 = 2S per direction, so
    T_tree ~= 2S/B + 2*(depth + g - 1)*alpha,
with depth = the deeper tree's height (~log2 of the node count) and g GPUs per node; alpha
is charged at the slowest hop of the pattern (an upper bound for the intra-node hops).
Torus (`torus_phases`, on simtrain.hardware.torus topologies): bidirectional rings along
each torus axis.

Loads: `phase_load` asks the topology for `route_load(src, dst)`, the fraction of a flow
on each link (1.0 along `route` for single-path routing; spread over equal-cost uplinks
for adaptive routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import chain as _chain
from typing import Sequence

from simtrain.hardware.topology import Link, Topology
from simtrain.hardware.torus import Torus
from simtrain.scenario.errors import SimtrainError

OPS = ("all-reduce", "reduce-scatter", "all-gather", "broadcast", "all-to-all", "send-recv")
ALGOS = ("ring", "tree", "hierarchical", "torus")


@dataclass(frozen=True)
class Phase:
    pairs: tuple[tuple[int, int], ...]  # (src, dst) flows
    nbytes: float  # bytes per flow
    steps: int  # sequential latency steps
    # > 0: `pairs` are only the flows whose source lies in [0, period) of a set that maps
    # onto itself under + period (mod the device count): a collective over a whole periodic
    # topology (simtrain.network.periodic), generated without its millions of flows
    period: int = 0

    def all_pairs(self, world: int) -> tuple[tuple[int, int], ...]:
        if not self.period:
            return self.pairs
        return tuple(((s + k) % world, (d + k) % world) for k in range(0, world, self.period) for s, d in self.pairs)


def _ring_pairs(group: Sequence[int]) -> tuple[tuple[int, int], ...]:
    group = list(group)
    return tuple(zip(group, group[1:] + group[:1]))


def ring_channels(group: Sequence[int], topo: Topology | None) -> list[list[int]]:
    """NCCL-style ring channels: one ring per GPU of a node when the group is whole
    blocks of g > 1 ranks on each of k > 1 nodes (else the group itself, one ring).

    NCCL runs several rings (channels) at once, each leaving a node from a different
    GPU and NIC, so that every NIC of a node carries one ring's inter-node hop. Channel j
    visits each node's ranks rotated by j (local j, j+1, ..., j-1), so it leaves node a
    from local rank j-1 and enters node a+1 at local rank j; each channel carries S/g.
    """
    if topo is None:
        return [list(group)]
    locals_ = _by_node(group, topo)
    g = len(locals_[0])
    if len(locals_) == 1 or g == 1 or any(len(x) != g for x in locals_):
        return [list(group)]
    return [[r for loc in locals_ for r in loc[j:] + loc[:j]] for j in range(g)]


def _window_nodes(n: int, g: int, window: int) -> list[list[int]]:
    """Nodes 0 .. window/g of a whole topology's rank order (a window's rings end one node on)."""
    return [list(range(a * g, (a + 1) * g)) for a in range(min(window // g + 1, n // g))]


def ring(op: str, group: Sequence[int], size: float, topo: Topology | None = None, window: int = 0) -> list[Phase]:
    """Ring algorithms; with `topo`, all-reduce / reduce-scatter / all-gather over whole
    nodes run NCCL-style channels (`ring_channels`), c rings of S/c each:
        T = 2(n-1)/n * S/(c * B_nic) + 2(n-1)*alpha when the NICs are the bottleneck.
    `window` > 0: the group is the whole of a periodic topology in rank order; only the
    flows leaving ranks [0, window) are listed (Phase.period)."""
    n = len(group)
    if n == 1:
        return []
    if op in ("all-reduce", "reduce-scatter", "all-gather"):
        if window:
            g = topo.gpus_per_node if topo is not None and n % topo.gpus_per_node == 0 and n > topo.gpus_per_node else 1
            nodes = _window_nodes(n, g, window)
            chans = [[r for loc in nodes for r in loc[j:] + loc[:j]] for j in range(g)]
            pairs = tuple(_chain.from_iterable(zip(ch[:window], ch[1:window + 1]) for ch in chans))
        else:
            chans = ring_channels(group, topo)
            pairs = tuple(_chain.from_iterable(_ring_pairs(ch) for ch in chans))
        share = size / len(chans)
        if op == "all-reduce":
            return [Phase(pairs, 2 * (n - 1) / n * share, 2 * (n - 1), window)]
        return [Phase(pairs, (n - 1) / n * share, n - 1, window)]
    if op == "broadcast":  # pipelined chain: every link carries S, n-1 hops of latency
        chain = tuple((group[i], group[i + 1]) for i in range(n - 1))
        return [Phase(chain, size, n - 1)]
    if op == "all-to-all":
        pairs = tuple((a, b) for a in group for b in group if a != b)
        return [Phase(pairs, size / n, 1)]
    if op == "send-recv":
        return [Phase(((group[0], group[1]),), size, 1)]
    raise SimtrainError(f"collective op {op!r}: unknown; use one of {', '.join(OPS)}")


def nccl_btree(n: int) -> list[int]:
    """Parent of each rank 0..n-1 in NCCL's binary tree (`ncclGetBtree`); -1 for the root.

    Find the lowest set bit of r; the parent is (r ^ bit) | (bit << 1), or r ^ bit when
    that is out of range. For n = 8: 1,3 -> 2; 5,7 -> 6; 2,6 -> 4; 4 -> 0.
    """
    parents = [-1] * n
    for r in range(1, n):
        bit = 1
        while bit < n and not (bit & r):
            bit <<= 1
        up = (r ^ bit) | (bit << 1)
        if up >= n:
            up = r ^ bit
        parents[r] = up
    return parents


def nccl_dtree(n: int) -> tuple[list[int], list[int]]:
    """The two trees of NCCL's double binary tree (`ncclGetDtree`): the btree, and its
    shift by one rank when n is odd or its mirror when n is even."""
    t0 = nccl_btree(n)
    if n % 2 == 1:
        t1 = [-1] * n
        for r in range(n):
            u = t0[(r - 1) % n]
            t1[r] = -1 if u == -1 else (u + 1) % n
    else:
        t1 = [-1 if t0[n - 1 - r] == -1 else n - 1 - t0[n - 1 - r] for r in range(n)]
    return t0, t1


def _depth(parents: list[int]) -> int:
    depth = 0
    for r in range(len(parents)):
        d, x = 0, r
        while parents[x] != -1:
            x, d = parents[x], d + 1
        depth = max(depth, d)
    return depth


def tree(op: str, group: Sequence[int], size: float, topo: Topology | None = None) -> list[Phase]:
    """NCCL's double binary tree all-reduce (other ops: ring, as NCCL)."""
    n = len(group)
    if n == 1:
        return []
    if op != "all-reduce":
        return ring(op, group, size, topo)
    locals_ = _by_node(group, topo) if topo is not None else [list(group)]
    g = len(locals_[0])
    if len(locals_) == 1 or g == 1 or any(len(x) != g for x in locals_):
        units, heads = [[r] for r in group], (0, 0)  # a tree over the ranks themselves
        g = 1
    else:
        units, heads = locals_, (0, g - 1)
    k = len(units)
    pairs: list[tuple[int, int]] = []
    depth = 0
    trees = nccl_dtree(k) if k > 1 else ([-1], [-1])
    for t, parents in enumerate(trees):
        depth = max(depth, _depth(parents))
        for u in units:  # intra-node chain towards the tree's head GPU, both directions
            order = u if heads[t] == 0 else list(reversed(u))
            for a, b in zip(order[1:], order[:-1]):
                pairs += [(a, b), (b, a)]
        for child, parent in enumerate(parents):
            if parent >= 0:
                a, b = units[child][heads[t]], units[parent][heads[t]]
                pairs += [(a, b), (b, a)]  # reduce up, broadcast down
    return [Phase(tuple(pairs), size / 2, 2 * (max(depth, 1) + g - 1))]


def _by_node(group: Sequence[int], topo: Topology) -> list[list[int]]:
    """The group's ranks by node (`node_of(r) = r // gpus_per_node` on every topology), in
    order of first appearance; memoized, since large groups ask for it once per algorithm."""
    return [list(x) for x in _nodes_of(tuple(group), topo.gpus_per_node)]


@lru_cache(maxsize=256)
def _nodes_of(group: tuple[int, ...], g: int) -> tuple[tuple[int, ...], ...]:
    by_node: dict[int, list[int]] = {}
    for r in group:
        by_node.setdefault(r // g, []).append(r)
    return tuple(tuple(x) for x in by_node.values())


def hierarchical(op: str, group: Sequence[int], size: float, topo: Topology, window: int = 0) -> list[Phase]:
    if window:
        g = topo.gpus_per_node
        k = len(group) // g
        if k < 2 or g < 2 or len(group) % g:
            return ring(op, group, size, topo, window=window)
        nodes = _window_nodes(len(group), g, window)
        intra_pairs = tuple(_chain.from_iterable(_ring_pairs(loc) for loc in nodes[:window // g]))
        inter_pairs = tuple(_chain.from_iterable(zip([loc[j] for loc in nodes[:window // g]], [loc[j] for loc in nodes[1:]])
                                                 for j in range(g)))
    else:
        locals_ = _by_node(group, topo)
        g = len(locals_[0])
        if len(locals_) == 1 or g == 1 or any(len(x) != g for x in locals_):
            return ring(op, group, size, topo)
        k = len(locals_)
        intra_pairs = tuple(_chain.from_iterable(_ring_pairs(loc) for loc in locals_))
        inter_pairs = tuple(_chain.from_iterable(_ring_pairs([loc[j] for loc in locals_]) for j in range(g)))
    phases: list[Phase] = []
    if op == "all-reduce":
        intra_rs = Phase(intra_pairs, (g - 1) / g * size, g - 1, window)
        inter = Phase(inter_pairs, 2 * (k - 1) / k * size / g, 2 * (k - 1), window)
        intra_ag = Phase(intra_rs.pairs, (g - 1) / g * size, g - 1, window)
        return [intra_rs, inter, intra_ag]
    if op in ("reduce-scatter", "all-gather"):
        intra = Phase(intra_pairs, (g - 1) / g * size, g - 1, window)
        inter = Phase(inter_pairs, (k - 1) / k * size / g, k - 1, window)
        phases = [intra, inter] if op == "reduce-scatter" else [inter, intra]
        return phases
    return ring(op, group, size, topo, window=window)


def torus_phases(op: str, group: Sequence[int], size: float, topo: Topology) -> list[Phase]:
    """Bidirectional rings along each torus axis in turn.

    All-reduce = reduce-scatter along each spanned axis (longest first), each step on the
    shard left by the previous axes, then all-gather back in reverse order. On an axis of
    n_i chips, every line of chips runs a ring in both directions at once, each direction
    carrying half the data, so each link direction carries one flow. With D_i = S / prod
    of the earlier axes' n_j, the reduce-scatter on axis i moves (n_i-1)/n_i * D_i/2 per
    flow in n_i - 1 neighbour steps. On a wraparound torus with link bandwidth B and hop
    latency alpha:
        T_RS = T_AG = sum_i [ (n_i - 1)/n_i * D_i / (2B) + (n_i - 1) * alpha ]
        T_AR = 2 * T_RS
    For a k x k x k torus: T_AR = (k-1)/k * S/B * (1 + 1/k + 1/k^2) + 6(k-1) * alpha,
    against 2(N-1)/N * S/B + 2(N-1) * alpha for one unidirectional ring over all N chips.
    Other ops, and groups that are not a full sub-torus, use the ring algorithm (routed
    dimension-ordered).
    """
    if len(group) < 2:
        return []
    if not isinstance(topo, Torus):
        raise SimtrainError(f"collective algo 'torus' needs a torus topology, not {topo.name!r}; use auto, ring, tree or hierarchical")
    lattice = topo.axis_lattice(group)
    if not lattice or op not in ("all-reduce", "reduce-scatter", "all-gather"):
        return ring(op, group, size, topo)
    lattice = sorted(lattice, key=lambda x: (-x[2], x[0]))
    members = set(group)
    rs: list[Phase] = []
    data = float(size)
    for a, step, n in lattice:
        stride = topo._strides[a]
        pairs: list[tuple[int, int]] = []
        for r in sorted(members):
            c = topo.coord(r)
            nxt = r + (((c[a] + step) % topo.shape[a]) - c[a]) * stride
            pairs += [(r, nxt), (nxt, r)]  # + ring and - ring share no link direction
        rs.append(Phase(tuple(pairs), (n - 1) / n * data / 2, n - 1))
        data /= n
    if op == "reduce-scatter":
        return rs
    ag = list(reversed(rs))
    return ag if op == "all-gather" else rs + ag


def phases(op: str, algo: str, group: Sequence[int], size: float, topo: Topology, window: int = 0) -> list[Phase]:
    """The phases of `op` by `algo`. `window` > 0 (ring and hierarchical, over a whole
    periodic topology in rank order): list only the flows that leave ranks [0, window)."""
    if op not in OPS:
        raise SimtrainError(f"collective op {op!r}: unknown; use one of {', '.join(OPS)}")
    if algo == "ring":
        return ring(op, group, size, topo, window if op in ("all-reduce", "reduce-scatter", "all-gather") else 0)
    if algo == "tree":
        return tree(op, group, size, topo)
    if algo == "hierarchical":
        return hierarchical(op, group, size, topo, window)
    if algo == "torus":
        return torus_phases(op, group, size, topo)
    raise SimtrainError(f"collective algo {algo!r}: unknown; use one of auto, {', '.join(ALGOS)}")


def phase_load(phase: Phase, topo: Topology, copies: Sequence[int] = (0,)) -> dict[Link, float]:
    """Link multiplicities of one phase, including identical copies run by other groups.

    Groups that differ only in other parallel coordinates are rank translations of each
    other (rank is linear in the coordinates), so each copy is an offset added to every
    rank of the representative's flows. `copies` includes 0 for the representative.
    """
    load: dict[Link, float] = {}
    route_load = getattr(topo, "route_load", None)
    get = load.get
    pairs = phase.all_pairs(topo.num_gpus)
    for off in copies:
        for s, d in pairs:
            if route_load is None:
                for link in topo.route(s + off, d + off):
                    load[link] = get(link, 0.0) + 1.0
            else:
                for link, frac in route_load(s + off, d + off):
                    load[link] = get(link, 0.0) + frac
    return load


def phase_latency(phase: Phase, topo: Topology) -> float:
    alpha = max((topo.route_latency(s, d) for s, d in phase.pairs), default=0.0)  # a window: every pair's translate
    return phase.steps * alpha
