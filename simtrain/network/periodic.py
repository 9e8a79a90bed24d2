"""Link loads from one period of a bundle's flows, so that their cost does not grow with
the cluster.

A bundle is a phase's flows (pairs) plus the identical copies other process groups run
at the same moment (offsets added to every rank, simtrain.network.collectives.phase_load).
On a topology with a translation period T (`Topology.period()`: shifting every device by
T, modulo the device count N, maps routes, fractions, capacities and latencies onto
themselves: a fat tree's scalable units or pods, a torus' z-planes), take P a multiple of
T dividing N. When the bundle, as a set of flows modulo N, is invariant under the shift
by P, every link of an orbit {l, l + P, l + 2P, ...} (N/P distinct links) carries the
same load, and that load is the number of crossings of the orbit by the flows whose
source lies in [0, P):
    load(l) = (1 / (N/P)) * sum over all flows of crossings of orbit(l)
            = sum over flows with source in [0, P) of crossings of orbit(l),
since the flows fall into N/P translates of those. Each orbit is then registered once,
under its representative `Topology.orbit_link(l, P)`, and the flow network's link classes
(which only depend on which bundles load a link, and by how much) are the same as with
every link listed: the max-min rates are unchanged, at a cost proportional to the flows
of one period instead of the whole cluster.

Invariance is checked, not assumed: the copies (as offsets modulo N) or the pairs
themselves must map onto themselves under the shift (copies that span every
data-parallel replica do; a ring over them does; NCCL's binary trees do not, and are
routed in full).
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import chain
from typing import Iterator, Sequence

import numpy as np

from simtrain.hardware.topology import Link, Topology


def _shift_invariant(values: np.ndarray, period: int, world: int) -> bool:
    return bool(np.array_equal(np.sort(values), np.sort((values + period) % world)))


def copies_invariant(copies: Sequence[int], period: int, world: int) -> bool:
    """The copies, as offsets modulo `world`, map onto themselves under `+ period`."""
    c = np.fromiter(copies, dtype=np.int64, count=len(copies)) % world
    return _shift_invariant(c, period, world)


def pairs_invariant(pairs: Sequence[tuple[int, int]], period: int, world: int) -> bool:
    """The (src, dst) flows map onto themselves under `+ period` on both ends, modulo `world`."""
    if not pairs:
        return True
    a = np.fromiter(chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs)).reshape(-1, 2)
    enc = a[:, 0] * world + a[:, 1]
    shifted = ((a[:, 0] + period) % world) * world + (a[:, 1] + period) % world
    return bool(np.array_equal(np.sort(enc), np.sort(shifted)))


def window_flows(pairs: Sequence[tuple[int, int]], copies: Sequence[int], period: int) -> Iterator[tuple[int, int]]:
    """The flows (s + c, d + c) of the bundle whose source lies in [0, period)."""
    C = sorted(copies)
    if len(pairs) <= len(C):
        for s, d in pairs:
            for c in C[bisect_left(C, -s):bisect_left(C, period - s)]:
                yield s + c, d + c
        return
    P = sorted(pairs)
    srcs = [p[0] for p in P]
    for c in C:
        for s, d in P[bisect_left(srcs, -c):bisect_left(srcs, period - c)]:
            yield s + c, d + c


class Periodic:
    """Loads and latencies of phases on `topo` under shifts by `period` (a multiple of
    `topo.period()` dividing `topo.num_gpus`)."""

    def __init__(self, topo: Topology, period: int):
        self.topo, self.period, self.world = topo, period, topo.num_gpus
        self._orbit: dict[Link, Link] = {}
        self._copies_ok: dict[tuple[int, ...], bool] = {}

    @property
    def orbit_size(self) -> int:
        return self.world // self.period

    def invariant(self, phase, copies: tuple[int, ...]) -> bool:
        if phase.period:  # generated as one period's window of an invariant set
            return phase.period == self.period
        pairs = phase.pairs
        ok = self._copies_ok.get(copies)
        if ok is None:
            ok = self._copies_ok[copies] = copies_invariant(copies, self.period, self.world)
        return ok or pairs_invariant(pairs, self.period, self.world)

    def load(self, phase, copies: Sequence[int]) -> dict[Link, float]:
        """Per-orbit load (see the module docstring); the caller has checked invariance."""
        out: dict[Link, float] = {}
        orbit, rep = self._orbit, self.topo.orbit_link
        route_load, P, N = self.topo.route_load, self.period, self.world
        if phase.period:  # the pairs are one window already: bring each copy's back into it
            flows = (((s + c) % P, (d + c - (s + c) // P * P) % N) for s, d in phase.pairs for c in copies)
        else:
            flows = window_flows(phase.pairs, copies, P)
        for s, d in flows:
            for link, frac in route_load(s, d):
                key = orbit.get(link)
                if key is None:
                    key = orbit[link] = rep(link, P)
                out[key] = out.get(key, 0.0) + frac
        return out

    def max_latency(self, phase) -> float:
        """Largest route latency among the phase's pairs; when they are invariant, among
        those whose source lies in one period (every other pair is a translate of one)."""
        lat, pairs = self.topo.route_latency, phase.pairs
        if not phase.period and len(pairs) > self.period and pairs_invariant(pairs, self.period, self.world):
            pairs = [(s, d) for s, d in pairs if s < self.period]
        return max((lat(s, d) for s, d in pairs), default=0.0)

    # ---- bundles of unequal flows (expert-parallel all-to-alls: simtrain.network.alltoall)
    def flows_invariant(self, flows: dict[tuple[int, int], float], copies: Sequence[int]) -> bool:
        """The bundle (every flow in every copy) maps onto itself under the shift: its copies
        do (they span every expert group of a pipeline stage)."""
        copies = tuple(copies)
        ok = self._copies_ok.get(copies)
        if ok is None:
            ok = self._copies_ok[copies] = copies_invariant(copies, self.period, self.world)
        return ok

    def flows_load(self, flows: dict[tuple[int, int], float], copies: Sequence[int], unit: float) -> dict[Link, float]:
        """Per-orbit load of a bundle of unequal flows, each counting size / `unit`, from the
        copies of each flow whose source lies in [0, period) (see the module docstring)."""
        out: dict[Link, float] = {}
        orbit, rep = self._orbit, self.topo.orbit_link
        route_load, P = self.topo.route_load, self.period
        C = sorted(copies)
        for (s, d), nbytes in flows.items():
            w = nbytes / unit
            for c in C[bisect_left(C, -s):bisect_left(C, P - s)]:
                for link, frac in route_load(s + c, d + c):
                    key = orbit.get(link)
                    if key is None:
                        key = orbit[link] = rep(link, P)
                    out[key] = out.get(key, 0.0) + w * frac
        return out
