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
Double binary tree (Sanders et al. 2009; NCCL >= 2.4): two complementary binary trees
each reduce and broadcast half the buffer, pipelined, so a rank's link carries about 2S
and latency grows with 2*log2(n) steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from simtrain.errors import SimtrainError
from simtrain.topology import Link, Topology

OPS = ("all-reduce", "reduce-scatter", "all-gather", "broadcast", "all-to-all", "send-recv")
ALGOS = ("ring", "tree", "hierarchical")


@dataclass(frozen=True)
class Phase:
    pairs: tuple[tuple[int, int], ...]  # (src, dst) flows
    nbytes: float  # bytes per flow
    steps: int  # sequential latency steps


def _ring_pairs(group: Sequence[int]) -> tuple[tuple[int, int], ...]:
    n = len(group)
    return tuple((group[i], group[(i + 1) % n]) for i in range(n))


def ring(op: str, group: Sequence[int], size: float) -> list[Phase]:
    n = len(group)
    if n == 1:
        return []
    pairs = _ring_pairs(group)
    if op == "all-reduce":
        return [Phase(pairs, 2 * (n - 1) / n * size, 2 * (n - 1))]
    if op in ("reduce-scatter", "all-gather"):
        return [Phase(pairs, (n - 1) / n * size, n - 1)]
    if op == "broadcast":  # pipelined chain: every link carries S, n-1 hops of latency
        chain = tuple((group[i], group[i + 1]) for i in range(n - 1))
        return [Phase(chain, size, n - 1)]
    if op == "all-to-all":
        pairs = tuple((a, b) for a in group for b in group if a != b)
        return [Phase(pairs, size / n, 1)]
    if op == "send-recv":
        return [Phase(((group[0], group[1]),), size, 1)]
    raise SimtrainError(f"collective op {op!r}: unknown; use one of {', '.join(OPS)}")


def _tree_edges(order: Sequence[int]) -> list[tuple[int, int]]:
    """(child, parent) edges of a binary heap laid over `order`."""
    return [(order[i], order[(i - 1) // 2]) for i in range(1, len(order))]


def tree(op: str, group: Sequence[int], size: float) -> list[Phase]:
    n = len(group)
    if n == 1:
        return []
    if op != "all-reduce":
        return ring(op, group, size)
    depth = math.ceil(math.log2(n + 1)) - 1 if n > 1 else 0
    t1 = _tree_edges(list(group))
    t2 = _tree_edges(list(reversed(group)))  # mirrored: t1's leaves are t2's inner nodes
    pairs = tuple(t1 + [(p, c) for c, p in t1] + t2 + [(p, c) for c, p in t2])
    return [Phase(pairs, size / 2, 2 * max(depth, 1))]


def hierarchical(op: str, group: Sequence[int], size: float, topo: Topology) -> list[Phase]:
    by_node: dict[int, list[int]] = {}
    for r in group:
        by_node.setdefault(topo.node_of(r), []).append(r)
    locals_ = list(by_node.values())
    g = len(locals_[0])
    if len(locals_) == 1 or g == 1 or any(len(x) != g for x in locals_):
        return ring(op, group, size)
    k = len(locals_)
    phases: list[Phase] = []
    if op == "all-reduce":
        intra_rs = Phase(tuple(p for loc in locals_ for p in _ring_pairs(loc)), (g - 1) / g * size, g - 1)
        inter = Phase(tuple(p for j in range(g) for p in _ring_pairs([loc[j] for loc in locals_])),
                      2 * (k - 1) / k * size / g, 2 * (k - 1))
        intra_ag = Phase(intra_rs.pairs, (g - 1) / g * size, g - 1)
        return [intra_rs, inter, intra_ag]
    if op in ("reduce-scatter", "all-gather"):
        intra = Phase(tuple(p for loc in locals_ for p in _ring_pairs(loc)), (g - 1) / g * size, g - 1)
        inter = Phase(tuple(p for j in range(g) for p in _ring_pairs([loc[j] for loc in locals_])),
                      (k - 1) / k * size / g, k - 1)
        phases = [intra, inter] if op == "reduce-scatter" else [inter, intra]
        return phases
    return ring(op, group, size)


def phases(op: str, algo: str, group: Sequence[int], size: float, topo: Topology) -> list[Phase]:
    if op not in OPS:
        raise SimtrainError(f"collective op {op!r}: unknown; use one of {', '.join(OPS)}")
    if algo == "ring":
        return ring(op, group, size)
    if algo == "tree":
        return tree(op, group, size)
    if algo == "hierarchical":
        return hierarchical(op, group, size, topo)
    if algo == "torus":
        from simtrain.topology_ext import torus_phases  # provided by torus topologies

        return torus_phases(op, group, size, topo)
    raise SimtrainError(f"collective algo {algo!r}: unknown; use one of auto, {', '.join(ALGOS)}")


def phase_load(phase: Phase, topo: Topology, copies: Sequence[int] = (0,)) -> dict[Link, float]:
    """Link multiplicities of one phase, including identical copies run by other groups.

    Groups that differ only in other parallel coordinates are rank translations of each
    other (rank is linear in the coordinates), so each copy is an offset added to every
    rank of the representative's flows. `copies` includes 0 for the representative.
    """
    load: dict[Link, float] = {}
    for off in copies:
        for s, d in phase.pairs:
            for link in topo.route(s + off, d + off):
                load[link] = load.get(link, 0.0) + 1.0
    return load


def phase_latency(phase: Phase, topo: Topology) -> float:
    alpha = max((topo.route_latency(s, d) for s, d in phase.pairs), default=0.0)
    return phase.steps * alpha
