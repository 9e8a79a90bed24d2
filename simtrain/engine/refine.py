"""Classes of devices that behave alike under the scenario's what-ifs: the coarsest
equitable partition of devices, process groups and links (color refinement).

Per-rank mode simulates every device; a device's timeline is decided by
- its pipeline rank (its action list and stage work) and its compute speed,
- the collectives of its process groups (TP, CP, DP): each starts when the last member
  arrives and runs as one bundle of flows, at the max-min rate its links allow,
- its point-to-point transfers to and from its pipeline neighbours (one bundle each),
- the other bundles sharing those links,
and a bundle's algorithm (NCCL-style `auto`) by the capacities and latencies of its own
candidate routes. So color every device (pipeline rank, speed), every group and transfer
(kind; per candidate phase its bytes, latency steps, slowest route latency and rate alone),
every link (capacity, latency), and refine until stable: a device by the colors of its
groups and transfers (and its role in them), a group by the colors of its members and by
its links with their multiplicities (per candidate phase), a link by the bundles crossing
it with theirs. At the fixed point, two devices of one color have the same inputs at
every moment, by induction over the simulation's events (two groups of one color start
together, take the same algorithm and get the same rate; max-min fair rates are unique,
so the rates of bundles of one color are equal), hence the same timelines. Simulating one
device per color, with each group class's collective carrying the flows of all its groups
(simtrain.engine.symmetry), is then exactly per-rank mode; tests check it to 1e-9.

Multisets are hashed as sums of 64-bit mixes (splitmix64) over numpy arrays; a collision
could only merge colors, with probability ~2^-64 per pair. The classes are the coarsest
such partition, e.g. for one straggler: per pipeline rank, (its replica or another) x (its
TP rank or another); for a thinner leaf uplink: per pipeline rank, on its rail or not.
"""

from __future__ import annotations

import numpy as np

from simtrain.engine.symmetry import Classes, GroupView
from simtrain.engine.structure import Structure

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _renumber(h: np.ndarray) -> np.ndarray:
    return np.unique(h, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)


def _colors0(st: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial colors: devices (pipeline rank, speed); groups and transfers (kind, and per
    candidate phase its bytes, steps, slowest route latency and rate alone); links
    (capacity, latency)."""
    plan, L = st.plan, st.plan.layout
    ranks = np.arange(st.N)
    pp = (ranks // L.stride("pp")) % L.pp
    speed = np.ones(st.N)
    for r, f in plan.speed.items():
        speed[r] = f
    rank0 = _mix(_mix(pp.astype(np.uint64)) + _bits(speed))
    inst0 = np.zeros(st.n_inst, dtype=np.uint64)
    for b in st.blocks:
        h = np.full(len(b.bases), _mix(np.array([hash(b.kind) & 0xFFFFFFFF], dtype=np.uint64))[0])
        for op, a, j, nbytes, steps, ps in b.entries:
            tag = _mix(np.array([hash((op, a, j, steps)) & 0xFFFFFFFFFFFF], dtype=np.uint64))[0]
            h = _mix(h + tag + _mix(_bits(np.array([nbytes]))) + _mix(_bits(b.alpha[ps])) + _mix(_mix(_bits(b.rate[ps]))))
        inst0[b.first:b.first + len(b.bases)] = h
    cap, lat = st.index.capacity, st.index.latency
    link0 = _mix(_mix(_bits(cap)) + _bits(lat)) if len(cap) else np.zeros(0, dtype=np.uint64)
    return _renumber(rank0), _renumber(inst0), _renumber(link0)


def _edges(st: Structure):
    """(device, group, role) memberships and (group, link, label) loads as arrays."""
    mr, mi, ml = [], [], []
    ni, nl, nlab = [], [], []
    roles = {"tp": 1, "cp": 2, "dp": 3, "dpcp": 4}
    for b in st.blocks:
        ids = b.ids()
        if b.kind == "p2p":
            mr += [b.bases, b.bases + b.rel[1]]
            mi += [ids, ids]
            ml += [np.full(len(ids), 5), np.full(len(ids), 6)]
        else:
            rel = np.asarray(b.rel)
            mr.append((b.bases[:, None] + rel[None, :]).ravel())
            mi.append(np.repeat(ids, len(rel)))
            ml.append(np.full(len(ids) * len(rel), roles[b.kind]))
        for ps, (rows_i, rows_l, mult) in enumerate(b.rows):
            first = next(e for e in b.entries if e[5] == ps)
            tag = np.uint64(hash((b.kind, first[0], first[1], first[2])) & 0xFFFFFFFFFFFF)
            ni.append(rows_i + b.first)
            nl.append(rows_l)
            nlab.append(_mix(_bits(mult) + tag))
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt))
    return ((cat(mr, np.int64), cat(mi, np.int64), cat(ml, np.uint64)),
            (cat(ni, np.int64), cat(nl, np.int64), cat(nlab, np.uint64)))


def _refine(st: Structure) -> tuple[np.ndarray, np.ndarray]:
    """Color refinement to the fixed point: (device colors, group colors)."""
    rc, ic, lc = _colors0(st)
    (mr, mi, ml), (ni, nl, nlab) = _edges(st)
    lab_m = _mix(ml + np.uint64(0x9E3779B97F4A7C15))
    nlab_m = _mix(nlab + np.uint64(0x632BE59BD9B4E019))
    counts = (len(np.unique(rc)), len(np.unique(ic)), len(np.unique(lc)))
    while True:
        def spread(n: int, to: np.ndarray, lab: np.ndarray, colors: np.ndarray) -> np.ndarray:
            """Sum (mod 2^64) of the mixed (label, neighbour color) over each target's edges:
            bincount on the two 32-bit halves, exact in float64 below 2^21 edges per target."""
            if not len(to):
                return np.zeros(n, dtype=np.uint64)
            h = _mix(lab + colors.astype(np.uint64))
            lo = np.bincount(to, weights=(h & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=n)
            hi = np.bincount(to, weights=(h >> np.uint64(32)).astype(np.float64), minlength=n)
            return lo.astype(np.uint64) + (hi.astype(np.uint64) << np.uint64(32))

        r_new = _mix(_mix(rc.astype(np.uint64)) + spread(len(rc), mr, lab_m, ic[mi]))
        i_new = _mix(_mix(ic.astype(np.uint64)) + spread(len(ic), mi, lab_m, rc[mr])
                     + _mix(spread(len(ic), ni, nlab_m, lc[nl]) + np.uint64(1)))
        l_new = _mix(_mix(lc.astype(np.uint64)) + spread(len(lc), nl, nlab_m, ic[ni]))
        rc, ic, lc = _renumber(r_new), _renumber(i_new), _renumber(l_new)
        new = (int(rc.max(initial=-1)) + 1, int(ic.max(initial=-1)) + 1, int(lc.max(initial=-1)) + 1)
        if new == counts:
            return rc, ic
        counts = new


def refined(plan) -> Classes:
    """The classes of `plan`'s devices under its what-ifs, with each representative's
    group classes and transfer copies (simtrain.engine.symmetry), and the link loads of
    their phases already summed (`Classes.preload`, handed to the engine's Comm)."""
    st = Structure(plan)
    rc, ic = _refine(st)
    L, N = plan.layout, st.N
    first = np.full(int(rc.max()) + 1, N, dtype=np.int64)
    np.minimum.at(first, rc, np.arange(N, dtype=np.int64))
    rep_of = first[rc].tolist()
    sizes = dict(zip(first.tolist(), np.bincount(rc).tolist()))
    reps = tuple(sorted(sizes))
    out = Classes(L, "refined", reps, sizes, rep_of)
    where = np.zeros(st.n_inst, dtype=np.int64)  # instance -> block
    base = np.zeros(st.n_inst, dtype=np.int64)  # instance -> first rank
    for i, b in enumerate(st.blocks):
        where[b.first:b.first + len(b.bases)] = i
        base[b.first:b.first + len(b.bases)] = b.bases
    order = np.argsort(ic, kind="stable")
    bounds = np.searchsorted(ic[order], np.arange(int(ic.max(initial=-1)) + 2))
    done: dict[int, tuple] = {}

    def group_class(inst: int) -> tuple:
        """(canonical group, copies, color): every group of `inst`'s color, as offsets
        from the lowest one (groups of one color are translates of each other)."""
        color = int(ic[inst])
        hit = done.get(color)
        if hit is None:
            insts = order[bounds[color]:bounds[color + 1]]
            b0 = int(base[insts].min())
            canon = tuple(b0 + x for x in st.blocks[where[inst]].rel)
            hit = done[color] = (canon, tuple(sorted((base[insts] - b0).tolist())), color)
            _preload(st, out, insts, where, canon, hit[1])
        return hit

    for dim, owner in st.inst_of.items():
        for rep in reps:
            canon, copies, color = group_class(int(owner[rep]))
            parts = tuple(sorted({rep_of[m] for m in canon}))
            out._views[(dim, rep)] = GroupView(canon, copies, parts, ("class", dim, color))
    for dim in ("tp", "cp", "dp", "dpcp"):  # groups of one device
        if dim not in st.inst_of:
            for rep in reps:
                out._views[(dim, rep)] = GroupView(L.group(dim, rep), (0,), (rep,), ("one", dim, rep))
    for (r, q), (bi, j) in st.p2p.items():
        if rep_of[r] == r:
            inst = st.blocks[bi].first + j
            color = int(ic[inst])
            insts = order[bounds[color]:bounds[color + 1]]
            copies = tuple(sorted((base[insts] - r).tolist()))
            out._p2p[(r, q)] = copies
            _preload(st, out, insts, where, (r, q), copies)
    return out


def _preload(st: Structure, out: Classes, insts: np.ndarray, where: np.ndarray, canon: tuple, copies: tuple) -> None:
    """Link loads of a group class's candidate phases, with its copies and alone, keyed as
    simtrain.network.comm.Comm keys them: ((pairs, copies) -> (load, rate alone, alpha)).
    The class's groups may sit in several blocks when those blocks list the same relative
    phases (else the Comm routes the class itself)."""
    if st.free:
        return
    blocks = {int(w): None for w in np.unique(where[insts]).tolist()}
    ref = st.blocks[next(iter(blocks))]
    if any(st.blocks[w].pair_sets != ref.pair_sets for w in blocks):
        return
    b0 = canon[0]
    home = [(w, np.flatnonzero(st.blocks[w].bases == b0)) for w in blocks]
    home = [(w, me) for w, me in home if len(me)]
    if not home:
        return
    hw, me = home[0]
    parts = {w: insts[where[insts] == w] - st.blocks[w].first for w in blocks}
    cap = st.plan.topology.link
    for ps, rel in enumerate(ref.pair_sets):
        pairs = tuple((b0 + x, b0 + y) for x, y in rel)
        alpha = float(st.blocks[hw].alpha[ps][me[0]])
        for key, groups in (((pairs, copies), parts), ((pairs, (0,)), {hw: me})):
            if key in out.preload:
                continue
            load: dict = {}
            for w, local in groups.items():
                for l, m in st.load(st.blocks[w], ps, local).items():
                    load[l] = load.get(l, 0.0) + m
            rate = min((cap(l).capacity / m for l, m in load.items()), default=float("inf"))
            out.preload[key] = (load, rate, alpha)


def per_rank_preload(plan, out: Classes) -> None:
    """Per-rank mode: every group's and transfer's candidate phases routed at once, keyed
    as the engine's Comm keys them alone ((pairs, (0,)) -> (load, rate alone, alpha))."""
    st = Structure(plan)
    if st.free:
        return
    for b in st.blocks:
        for ps, rel in enumerate(b.pair_sets):
            rate = b.rate[ps].tolist()
            alpha = b.alpha[ps].tolist()
            for j, load in st.each_load(b, ps):
                b0 = int(b.bases[j])
                out.preload[(tuple((b0 + x, b0 + y) for x, y in rel), (0,))] = (load, rate[j], alpha[j])
