"""Which devices the engine simulates, and what each one stands for.

Devices that provably behave alike form a class; the engine runs one representative per
class (the lowest rank) and charges the links with the traffic of every member. What a
representative needs to know:
- `view(dim, rep)`: its tensor/context/data-parallel collective as a *group class*: one
  canonical group (the ranks whose flows define the phases), the offsets of every other
  group of the class (translates of it: rank is linear in the coordinates), which run the
  same collective at the same moment and load their own links (`copies`), and the
  representatives of the classes among its members, which meet in a rendezvous before it
  starts (`reps`; just the caller when all members are in its own class);
- `peer(rep, pp)`: the representative of its pipeline neighbour's class on pipeline rank
  pp (arrival events are keyed by it), and `p2p_copies(rep, peer)`: the offsets of the
  identical point-to-point transfers of its class.
Three partitions (each tested against simulating every device):
- `pipeline`: one class per pipeline rank (TP, CP and DP ranks alike), the default
  without what-ifs. Copies are every other replica's group (simtrain.engine.plan).
- `per_rank`: every device its own class (`engine.mode = "per-rank"`, and what-ifs that
  make every device different: random per-device slowdowns, per-action jitter).
- refined (simtrain.engine.refine): the coarsest equitable partition of the devices, their
  process groups and the links for the scenario's what-ifs (a straggler, a thinner or
  failed cable, a slow random fraction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable

from simtrain.network.periodic import Periodic
from simtrain.scenario.errors import bad
from simtrain.scenario.layout import Coord, Layout


@dataclass(frozen=True)
class GroupView:
    group: tuple[int, ...]  # canonical group of the class: its flows define the phases
    copies: tuple[int, ...]  # offsets of every group of the class (0 included)
    reps: tuple[int, ...]  # representatives that meet before the collective starts
    key: Hashable  # the group class (rendezvous key)


@dataclass
class Classes:
    """A partition of the devices into classes (see the module docstring)."""

    layout: Layout
    kind: str  # "pipeline", "per-rank" or "refined"
    reps: tuple[int, ...]
    sizes: dict[int, int]  # rep -> devices it stands for
    _rep_of: list[int] | None = None  # refined: rank -> its class's representative
    _views: dict = field(default_factory=dict)  # (dim, rep) -> GroupView
    _p2p: dict = field(default_factory=dict)  # (rep, peer rank) -> copies
    _copies: dict = field(default_factory=dict)  # pipeline: kind -> copies
    _group_ids: dict = field(default_factory=dict, repr=False)  # per-rank: group -> its view's key
    # link loads already summed for the engine's Comm: (pairs, copies) -> (load, rate alone, alpha)
    preload: dict = field(default_factory=dict, repr=False)

    def rep_of(self, rank: int) -> int:
        if self.kind == "per-rank":
            return rank
        if self.kind == "pipeline":
            L = self.layout
            return L.rank(Coord(0, L.coord(rank).pp, 0, 0))
        return self._rep_of[rank]

    def size(self, rep: int) -> int:
        return self.sizes[rep]

    def peer(self, rep: int, pp: int) -> int:
        """Representative of the class of `rep`'s neighbour on pipeline rank `pp`."""
        return self.rep_of(self.peer_rank(rep, pp))

    def peer_rank(self, rep: int, pp: int) -> int:
        L = self.layout
        c = L.coord(rep)
        return L.rank(Coord(c.dp, pp, c.cp, c.tp))

    def view(self, dim: str, rep: int) -> GroupView:
        key = (dim, rep)
        v = self._views.get(key)
        if v is None:
            v = self._views[key] = self._make_view(dim, rep)
        return v

    def _make_view(self, dim: str, rep: int) -> GroupView:
        L = self.layout
        group = L.group(dim, rep)
        if self.kind == "per-rank":
            # keyed by a number per distinct group (equal groups, equal keys, as keyed by the
            # group itself): rendezvous keys hash it at every collective, and a data-parallel
            # group is a tuple of hundreds of ranks
            return GroupView(group, (0,), group, self._group_ids.setdefault(group, len(self._group_ids)))
        if self.kind == "pipeline":
            return GroupView(group, self.copies(dim, L.coord(rep).pp), (rep,), group)
        raise KeyError((dim, rep))  # refined views are filled in by simtrain.engine.refine

    def p2p_copies(self, rep: int, peer: int) -> tuple[int, ...]:
        if self.kind == "per-rank":
            return (0,)
        if self.kind == "pipeline":
            return self.copies("pp")
        return self._p2p[(rep, peer)]

    def copies(self, kind: str, pp: int = 0) -> tuple[int, ...]:
        """Pipeline classes: rank offsets of the groups that mirror a representative's
        `kind` group (every other replica's), the same at every pipeline rank except for
        the expert groups ("ep", "edp"), which are carved from each stage's ranks."""
        key = (kind, pp) if kind in ("ep", "edp") else kind
        hit = self._copies.get(key)
        if hit is None:
            hit = self._copies[key] = _expert_offsets(self.layout, kind, pp) if kind in ("ep", "edp") else _offsets(self.layout, kind)
        return hit


def _expert_offsets(L: Layout, kind: str, pp: int) -> tuple[int, ...]:
    """Every expert group of pipeline rank `pp`, as a translation of the representative's."""
    base = L.rank(Coord(0, pp, 0, 0))
    mine = L.group(kind, base)
    seen, out = set(), []
    for r in (L.rank(Coord(d, pp, c, t)) for d in range(L.dp) for c in range(L.cp) for t in range(L.tp)):
        if r in seen:
            continue
        g = L.group(kind, r)
        seen.update(g)
        offs = {b - a for a, b in zip(mine, g)}
        if len(offs) != 1:
            raise bad("parallel.ep", L.ep, "makes expert groups that are not translations of one another "
                      "(symmetric mode needs them)", 'set engine.mode = "per-rank" or an ep aligned with tp*cp')
        out.append(offs.pop())
    return tuple(out)


def _offsets(L: Layout, kind: str) -> tuple[int, ...]:
    # rank is linear in the coordinates (strides from parallel.order): so is an offset
    t = [L.stride("tp") * k for k in range(L.tp)]
    c = [L.stride("cp") * k for k in range(L.cp)]
    d = [L.stride("dp") * k for k in range(L.dp)]
    if kind == "tp":
        return tuple(x + y for x in d for y in c)
    if kind == "dp":
        return tuple(y + z for y in c for z in t)
    if kind == "dpcp":
        return tuple(t)
    if kind == "cp":
        return tuple(x + z for x in d for z in t)
    if kind == "pp":
        return tuple(x + y + z for x in d for y in c for z in t)
    raise ValueError(kind)


def pipeline(L: Layout) -> Classes:
    reps = tuple(L.rank(Coord(0, p, 0, 0)) for p in range(L.pp))
    return Classes(L, "pipeline", reps, {r: L.world // L.pp for r in reps})


def per_rank(L: Layout) -> Classes:
    return Classes(L, "per-rank", tuple(range(L.world)), _Ones())


class _Ones(dict):
    """Every device stands for itself."""

    def __missing__(self, key: int) -> int:
        return 1


def periodic_network(plan) -> Periodic | None:
    """One period of every bundle's flows stands for all of them (simtrain.network.periodic)
    when the engine simulates one representative per pipeline rank on a topology with a
    translation period: with DP outermost (parallel.order), shifting ranks by
    P = lcm(topology period, TP*CP*PP) moves every data-parallel replica onto another and
    the network onto itself. Expert groups (parallel.ep) are carved from a stage's
    TP*CP*DP ranks: P also moves whole ones (a multiple of ETP*EP in that numbering)."""
    topo, L = plan.topology, plan.layout
    T = topo.period() if plan.symmetric and plan.scenario.engine.comm != "free" else None
    if not T or topo.num_gpus != L.world or L.order[-1] != "dp":
        return None
    replica = L.tp * L.cp * L.pp
    P = math.lcm(T, replica)
    experts = L.ep * L.etp
    if experts > 1:
        P = math.lcm(P, replica * (experts // math.gcd(experts, L.tp * L.cp)))
    if L.world % P or P >= L.world:
        return None
    return Periodic(topo, P)
