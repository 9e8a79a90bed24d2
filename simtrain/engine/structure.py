"""Every process group and pipeline transfer of a layout, with the links its candidate
collective phases load, as numpy arrays: the input of the what-if classes
(simtrain.engine.refine) and the loads the engine registers for them.

Groups of one kind are translates of each other (rank is linear in the coordinates), and
so are their phases where the topology only groups ranks by node: a *block* is the
groups of one kind whose first rank sits at the same place in its node; one block's
phases are generated once and translated, and all of its flows are routed in one call
(simtrain.network.linkindex). On a torus, whose axes the phases follow, every group is
its own block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simtrain.network import collectives as coll
from simtrain.network.comm import candidates
from simtrain.network.linkindex import LinkIndex


@dataclass
class Block:
    kind: str  # "tp", "cp", "dp", "dpcp" or "p2p"
    rel: tuple[int, ...]  # members relative to the first
    bases: np.ndarray  # first member of each group
    first: int  # instance id of the first group
    entries: list = field(default_factory=list)  # (op, algo, phase, bytes per byte of S, steps, pair set)
    pair_sets: list = field(default_factory=list)  # relative pairs
    rows: list = field(default_factory=list)  # per pair set: (instance, link, multiplicity), by instance
    alpha: list = field(default_factory=list)  # per pair set: slowest route latency of each group
    rate: list = field(default_factory=list)  # per pair set: per-flow rate of each group alone

    def ids(self) -> np.ndarray:
        return np.arange(self.first, self.first + len(self.bases))


class Structure:
    def __init__(self, plan):
        self.plan = plan
        L, topo, s = plan.layout, plan.topology, plan.scenario
        self.N = L.world
        self.dp_dim = "dpcp" if L.cp > 1 else "dp"
        lc = plan.stages[0].layer
        sp = s.parallel.sequence_parallel and L.tp > 1
        self.ops = {"tp": ("all-reduce", "all-gather", "reduce-scatter") if sp else ("all-reduce",),
                    "cp": ("all-gather", "reduce-scatter") if lc.cp_bytes > 0 else (),
                    self.dp_dim: ("all-reduce",) if s.parallel.zero == 0 else ("reduce-scatter", "all-gather"),
                    "p2p": ("send-recv",)}
        if lc.tp_bytes <= 0:
            self.ops["tp"] = ()
        self.free = s.engine.comm == "free"
        self.algo = s.engine.collective_algo
        self.index = LinkIndex(topo)
        self.align = topo.gpus_per_node if getattr(topo, "collective_algos", None) is None else 0
        self.blocks: list[Block] = []
        self.n_inst = 0
        self.inst_of: dict[str, np.ndarray] = {}  # dim -> instance of every rank
        for dim in ("tp", "cp", self.dp_dim):
            g0 = L.group(dim, 0)
            if len(g0) > 1:
                self._groups(dim, g0)
        self.p2p: dict[tuple[int, int], tuple[int, int]] = {}  # (src, dst) -> (block, local index)
        self._transfers()
        for b in self.blocks:
            self._route(b)
        cap = self.index.capacity
        for b in self.blocks:  # each group's per-flow rate alone, once every link is known
            for rows_i, rows_l, mult in b.rows:
                rate = np.full(len(b.bases), np.inf)
                if len(rows_i):
                    np.minimum.at(rate, rows_i, cap[rows_l] / mult)
                b.rate.append(rate)

    # --- instances --------------------------------------------------------------------
    def _add_block(self, kind: str, rel: tuple[int, ...], bases: np.ndarray) -> list[Block]:
        out = []
        keys = bases % self.align if self.align else np.arange(len(bases))
        for k in np.unique(keys):
            b = Block(kind, rel, bases[keys == k], self.n_inst)
            self.n_inst += len(b.bases)
            self.blocks.append(b)
            out.append(b)
        return out

    def _groups(self, dim: str, g0: tuple[int, ...]) -> None:
        L = self.plan.layout
        rel = tuple(x - g0[0] for x in g0)
        member = np.zeros(self.N, dtype=bool)
        member[np.asarray(rel)] = True
        # the first rank of each group: the ranks whose `dim` coordinate(s) are 0
        ranks = np.arange(self.N)
        t, k, d = ((ranks // L.stride(x)) % L.size(x) for x in ("tp", "cp", "dp"))  # (parallel.order)
        zero = {"tp": t == 0, "cp": k == 0, "dp": d == 0, "dpcp": (d == 0) & (k == 0)}[dim]
        owner = np.empty(self.N, dtype=np.int64)
        for b in self._add_block(dim, rel, ranks[zero]):
            owner[(b.bases[:, None] + np.asarray(rel)[None, :]).ravel()] = np.repeat(b.ids(), len(rel))
        self.inst_of[dim] = owner

    def _transfers(self) -> None:
        """Point-to-point transfers between pipeline neighbours: one per TP/CP rank and
        direction, grouped by (pipeline rank, peer's pipeline rank)."""
        L, sched = self.plan.layout, self.plan.schedule
        S = len(sched.placement)
        pairs = set()
        for v in range(S):
            for nb, end in ((v - 1, sched.is_first(v)), (v + 1, sched.is_last(v))):
                if not end and sched.placement[nb] != sched.placement[v]:
                    pairs.add((sched.placement[v], sched.placement[nb]))
        ranks = np.arange(self.N)
        pp = (ranks // L.stride("pp")) % L.pp
        for p, q in sorted(pairs):
            delta = (q - p) * L.stride("pp")
            self._add_block("p2p", (0, delta), ranks[pp == p])
        for i, b in enumerate(self.blocks):
            if b.kind == "p2p":
                for j, r in enumerate(b.bases.tolist()):
                    self.p2p[(r, r + b.rel[1])] = (i, j)

    # --- phases and routes ------------------------------------------------------------
    def _route(self, b: Block) -> None:
        if self.free or not self.ops.get(b.kind):
            return
        topo = self.plan.topology
        g0 = tuple(int(b.bases[0]) + x for x in b.rel)
        sets: dict[tuple, int] = {}
        for op in self.ops[b.kind]:
            algos = [self.algo] if self.algo != "auto" and b.kind != "p2p" else candidates(op, g0, topo)
            for a in algos:
                for j, ph in enumerate(coll.phases(op, a, g0, 1.0, topo)):
                    rel = tuple((x - g0[0], y - g0[0]) for x, y in ph.pairs)
                    if rel not in sets:
                        sets[rel] = len(b.pair_sets)
                        b.pair_sets.append(rel)
                    b.entries.append((op, a, j, ph.nbytes, ph.steps, sets[rel]))
        n = len(b.bases)
        for rel in b.pair_sets:
            k = len(rel)
            r = np.asarray(rel, dtype=np.int64).reshape(-1, 2)
            src = (b.bases[:, None] + r[None, :, 0]).ravel()
            dst = (b.bases[:, None] + r[None, :, 1]).ravel()
            b.alpha.append(self.index.route_latency(src, dst).reshape(n, k).max(axis=1) if k else np.zeros(n))
            flow, link, frac = self.index.routes(src, dst)
            inst = flow // max(k, 1)
            width = np.int64(max(len(self.index), 1))
            key, inv = np.unique(inst * width + link, return_inverse=True)
            mult = np.bincount(inv.reshape(-1), weights=frac, minlength=len(key))
            b.rows.append((key // width, key % width, mult))

    def each_load(self, b: Block, pair_set: int):
        """(local index, {link: multiplicity}) of every group of block `b` alone."""
        rows_i, rows_l, mult = b.rows[pair_set]
        bounds = np.searchsorted(rows_i, np.arange(len(b.bases) + 1)).tolist()
        links, m, ls = self.index.links, mult.tolist(), rows_l.tolist()
        for j in range(len(b.bases)):
            yield j, {links[ls[k]]: m[k] for k in range(bounds[j], bounds[j + 1])}

    def load(self, b: Block, pair_set: int, members: np.ndarray) -> dict:
        """{link: multiplicity} of pair set `pair_set` summed over the groups `members`
        (local indices into the block)."""
        rows_i, rows_l, mult = b.rows[pair_set]
        keep = np.isin(rows_i, members)
        links, inv = np.unique(rows_l[keep], return_inverse=True)
        sums = np.bincount(inv.reshape(-1), weights=mult[keep], minlength=len(links))
        name = self.index.link
        return {name(i): float(m) for i, m in zip(links.tolist(), sums.tolist())}
