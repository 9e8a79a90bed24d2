"""Collectives and point-to-point transfers as bundles on the flow network.

`Comm.collective(...)` turns (op, group, size) into network phases
(simtrain.network.collectives), registers each phase's link load with the flow network
(with the identical copies that other groups run at the same moment, in symmetric mode)
and returns the phases to run.
The `auto` algorithm choice, written down the way NCCL documents its own (NCCL picks,
per collective and size, the (algorithm, protocol) with the least predicted time from
its latency + size/bandwidth tuning model, src/graph/tuning.cc; NCCL_ALGO overrides it):
1. Candidates, in this order:
   - "ring" always;
   - "tree" (NCCL's double binary tree) for all-reduce over more than 2 ranks;
   - "hierarchical" for all-reduce / reduce-scatter / all-gather when the group spans
     more than one node and more than one rank per node;
   - whatever the topology offers through `topology.collective_algos(group)` ("torus" on
     a TPU torus when the group is a full sub-torus).
   Broadcast, all-to-all and send-recv: ring only.
2. Predicted time of a candidate = the sum over its phases of
   (latency steps * slowest hop latency) + bytes per flow / (its bottleneck per-flow
   rate on an idle network), with the actual routes, link capacities and the other
   process groups' identical copies: an exact alpha-beta model of our own links rather
   than NCCL's fitted tables.
3. The least predicted time wins; ties go to the earlier candidate. So small messages
   pick the latency-light algorithm (tree, hierarchical, torus) and large ones the
   bandwidth-optimal one, as NCCL's tuner does.
`Comm(..., algo="ring")` (scenario `engine.collective_algo`, CLI `--algo`) forces one.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import truediv
from typing import Hashable, Sequence

from simtrain.hardware.topology import Topology
from simtrain.network import alltoall as a2a
from simtrain.network import collectives as coll
from simtrain.network.flows import FlowNetwork
from simtrain.network.periodic import Periodic


@dataclass(frozen=True)
class NetPhase:
    key: Hashable  # registered bundle type
    nbytes: float  # bytes per flow
    latency: float  # alpha steps, seconds


def _solo_rate(net: FlowNetwork, load: dict) -> float:
    """Per-flow rate of a bundle with link multiplicities `load` alone on an idle network:
    the least capacity / multiplicity (read from the network's capacity cache in one pass
    when every link is in it, as it is once a sweep has seen the links)."""
    caps = net._cap
    try:
        return min(map(truediv, map(caps.__getitem__, load), load.values()), default=float("inf"))
    except KeyError:
        cap = net.capacity
        return min(((caps.get(l) or cap(l)) / m for l, m in load.items()), default=float("inf"))


def candidates(op: str, group: tuple[int, ...], topo: Topology) -> list[str]:
    """The `auto` choice's candidate algorithms for `op` over `group`, in order (see above)."""
    if op not in ("all-reduce", "reduce-scatter", "all-gather"):
        return ["ring"]
    algos = ["ring"]
    if op == "all-reduce" and len(group) > 2:
        algos.append("tree")
    nodes = coll._nodes_of(tuple(group), topo.gpus_per_node)
    if 1 < len(nodes) < len(group):
        algos.append("hierarchical")
    extra = getattr(topo, "collective_algos", None)
    if extra:
        algos += [a for a in extra(group) if a not in algos]
    return algos


class BundleKey(tuple):
    """A registered bundle type's key, ((op, algo, group, copies), phase): a tuple whose
    hash is computed once (groups and copies of a large cluster are tens of thousands of
    ranks, and the flow network looks keys up at every transfer)."""

    def __new__(cls, items):
        self = super().__new__(cls, items)
        self._hash = tuple.__hash__(self)
        return self

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):  # rebuild (and rehash) in another process
        return (BundleKey, (tuple(self),))


class NotPeriodic(Exception):
    """A phase's flows are not invariant under the periodic network's shift (e.g. a binary
    tree over data-parallel replicas): its caller routes everything in full instead."""


class Comm:
    """`call_latency_s`: fixed cost of one collective or send/recv call beyond its transfer
    (NCCL kernel launch, stream synchronisation, proxy thread): the software stack's
    collective_us. `periodic` (simtrain.network.periodic.Periodic): register per-orbit
    loads computed from one period of each bundle's flows; a phase that is not invariant
    raises NotPeriodic (build a Comm without it)."""

    def __init__(self, net: FlowNetwork, topo: Topology, algo: str = "auto", call_latency_s: float = 0.0,
                 periodic: Periodic | None = None, mixed: bool = False, ring_ops: bool = False):
        self.net, self.topo, self.algo, self.periodic = net, topo, algo, periodic
        # ring_ops: under `auto`, all-gather and reduce-scatter run as rings (the software
        # stack's NCCL has no other algorithm for them: stack.ring_gather_scatter)
        self.ring_ops = ring_ops
        self.call_latency_s = call_latency_s
        # mixed: route a phase that is not invariant in full instead of raising NotPeriodic
        # (only for callers whose bundles never share the network, e.g. the nccl bench)
        self.mixed = mixed
        # alone: `auto` predicts each candidate's time for the group alone, as NCCL's tuner
        # does per communicator (per-rank mode and what-if classes), not with its copies
        self.alone = False
        self._cache: dict[Hashable, tuple[str, list[NetPhase]]] = {}
        self._shapes: dict[Hashable, list[tuple[Hashable, float, float]]] = {}
        self._loads: dict[Hashable, dict] = {}  # bundle key -> link load, shared by forks
        self._solo: dict[Hashable, float] = {}  # bundle key -> per-flow rate on an idle network
        self._pair_loads: dict[Hashable, tuple[dict, float, float]] = {}  # (flows, copies) -> (link load, solo rate, alpha)

    def fork(self, net: FlowNetwork) -> "Comm":
        """A Comm on another flow network (e.g. a fresh simpy Environment) that reuses the
        phase shapes, link loads and algorithm choices made so far instead of routing and
        choosing them again (the chosen bundles are registered on `net` below)."""
        other = Comm(net, self.topo, self.algo, self.call_latency_s, self.periodic, self.mixed, self.ring_ops)
        other.alone = self.alone
        other._shapes, other._loads, other._solo = dict(self._shapes), dict(self._loads), dict(self._solo)
        other._pair_loads = dict(self._pair_loads)
        other._cache = dict(self._cache)
        if not self.net._dirty and self.net._loads:
            net.adopt(self.net)  # registrations and link classes, compiled once
        else:
            for key, load in self._loads.items():
                if self.net.is_registered(key):
                    net.register(key, load)
        return other

    def _shape(self, op: str, algo: str, group: tuple[int, ...], copies: tuple[int, ...]) -> list[tuple[Hashable, float, float]]:
        """Phases for unit size: (bundle key, bytes per flow per byte of S, latency)."""
        skey = (op, algo, group, copies)
        if skey not in self._shapes:
            out = []
            per = self.periodic
            whole = per is not None and len(group) == self.topo.num_gpus and group == tuple(range(len(group)))
            for i, ph in enumerate(coll.phases(op, algo, group, 1.0, self.topo, per.period if whole else 0)):
                key = BundleKey((skey, i))
                # phases with the same flows (a ring's all-reduce, reduce-scatter and
                # all-gather) load the same links: route them once
                lkey = (ph.pairs, copies)
                hit = self._pair_loads.get(lkey)
                if hit is None:
                    if per is not None and per.invariant(ph, copies):
                        load, alpha = per.load(ph, copies), per.max_latency(ph)
                    elif per is None or self.mixed:
                        load = coll.phase_load(ph, self.topo, copies)
                        alpha = max((self.topo.route_latency(a, b) for a, b in ph.pairs), default=0.0)
                    else:
                        raise NotPeriodic(f"{op} {algo} over {len(group)} ranks")
                    hit = self._pair_loads[lkey] = (load, _solo_rate(self.net, load), alpha)
                self._loads[key], self._solo[key], alpha = hit
                out.append((key, ph.nbytes, ph.steps * alpha))
            self._shapes[skey] = out
        return self._shapes[skey]

    def _time(self, shape: list[tuple[Hashable, float, float]], size: float) -> float:
        """Idle-network time of a shape at `size` bytes (the tuner's prediction)."""
        if self.net.free:
            return 0.0
        t = self.call_latency_s
        for k, f, lat in shape:
            t += lat + (f * size / self._solo[k] if self._loads[k] and size > 0 else 0.0)
        return t

    def _register(self, shape: list[tuple[Hashable, float, float]]) -> None:
        for k, _, _ in shape:
            if not self.net.is_registered(k):
                self.net.register(k, self._loads[k])

    def candidates(self, op: str, group: tuple[int, ...]) -> list[str]:
        return candidates(op, group, self.topo)

    def prepare(self, op: str, group: Sequence[int], copies: Sequence[int] = (0,), sizes: Sequence[float] = ()) -> None:
        """Choose and register the algorithm for each expected size ahead of the run, so
        the flow network compiles its link classes once (an unforeseen size or choice is
        registered when it first runs)."""
        group, copies = tuple(group), tuple(copies)
        if len(group) < 2:
            return
        for size in sizes:
            self.collective(op, group, size, copies)

    def collective(self, op: str, group: Sequence[int], size: float, copies: Sequence[int] = (0,), algo: str | None = None) -> tuple[str, list[NetPhase]]:
        group, copies = tuple(group), tuple(copies)
        algo = algo or self.algo
        if algo == "auto" and self.ring_ops and op in ("all-gather", "reduce-scatter"):
            algo = "ring"
        ckey = (op, group, copies, size, algo)
        hit = self._cache.get(ckey)
        if hit:
            return hit
        if algo == "auto":
            best = None
            for a in self.candidates(op, group):
                t = self._time(self._shape(op, a, group, (0,) if self.alone else copies), size)
                if best is None or t < best[0]:
                    best = (t, a)
            algo = best[1] if best else "ring"
        shape = self._shape(op, algo, group, copies)
        self._register(shape)
        phases = [NetPhase(k, f * size, lat + (self.call_latency_s if i == 0 and not self.net.free else 0.0))
                  for i, (k, f, lat) in enumerate(shape)]
        self._cache[ckey] = (algo, phases)
        return algo, phases

    def flows(self, name: Hashable, flows: dict[tuple[int, int], float], copies: Sequence[int] = (0,)) -> NetPhase:
        """One bundle of unequal flows that start and finish together (an expert-parallel
        dispatch or combine: simtrain.network.alltoall), registered once under `name`. On a
        periodic network its per-orbit load comes from one period of its flows (raises
        NotPeriodic when they are not invariant under the shift)."""
        key = ("flows", name, tuple(copies))
        hit = self._cache.get(key)
        if hit is None:
            unit = max(flows.values(), default=0.0)
            per = self.periodic
            if unit <= 0:
                load = {}
            elif per is not None and per.flows_invariant(flows, copies):
                load = per.flows_load(flows, copies, unit)
            elif per is None or self.mixed:
                load = a2a.flows_load(flows, self.topo, unit, copies)
            else:
                raise NotPeriodic(f"all-to-all over {len({s for s, _ in flows})} ranks")
            self._loads[key] = load
            if not self.net.is_registered(key):
                self.net.register(key, load)
            hit = self._cache[key] = ("flows", [NetPhase(key, unit, a2a.flows_latency(flows, self.topo))])
        return hit[1][0]

    def p2p(self, src: int, dst: int, size: float, copies: Sequence[int] = (0,)) -> list[NetPhase]:
        return self.collective("send-recv", (src, dst), size, copies, algo="ring")[1]
