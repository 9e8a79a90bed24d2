"""Weighted max-min fair rates by progressive filling (Bertsekas & Gallager, Data Networks
§6.5.2), over link classes: what simtrain.network.flows.FlowNetwork solves whenever a
bundle starts or ends."""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any, Mapping, Sized

EPS = 1e-12


def max_min_rates(bundles: dict[Any, list[tuple[int, float]]], capacity: list[float],
                  users: Mapping[int, Sized] | None = None) -> dict[Any, float]:
    """Weighted max-min fair rates by progressive filling.

    `bundles[b]` lists (link class, multiplicity m); a bundle at rate r puts m*r on that
    class. All unfrozen bundles rise together; when a class saturates, the bundles on it
    freeze at the current level. The next class to saturate comes from a heap of class
    levels (capacity left / weight of unfrozen bundles), refreshed lazily: freezing only
    raises the level of the other classes a frozen bundle uses, so a stale entry is never
    too high. Ties go to the class first seen, as a linear scan in that order would.

    `users[cid]`, when given, holds the bundles on class cid (at least those in `bundles`):
    a class with one user is the bundle's own, its level cap/m fixed until that bundle
    freezes, so all of a bundle's own classes count as one entry at their lowest level
    (the same float). A collective's ring crosses hundreds of classes that only it uses;
    a point-to-point transfer beside it shares one or two: the filling then visits only
    the shared ones (per-rank mode solves such components at every transfer; the flow
    network keeps each bundle's shared classes as it goes: simtrain.network.sharing).
    """
    if users is None:
        return fill(bundles, {}, capacity)
    shared: dict[Any, list[tuple[int, float]]] = {}
    own: dict[Any, float] = {}
    for b, cls in bundles.items():
        keep = shared[b] = []
        for c in cls:
            if len(users[c[0]]) == 1:
                lv = capacity[c[0]] / c[1]
                if b not in own or lv < own[b]:
                    own[b] = lv
            else:
                keep.append(c)
    return fill(shared, own, capacity)


def fill(shared: dict[Any, list[tuple[int, float]]], own: Mapping[Any, float | None], capacity: list[float]) -> dict[Any, float]:
    """`max_min_rates` on classes shared by several bundles (`shared[b]`: (class, m)) and
    one entry per bundle for the classes only it uses (`own[b]`: their lowest cap/m, or
    None / absent when it has none)."""
    rates: dict[Any, float] = {}
    unfrozen = set(shared)
    used: dict[int, float] = {}
    weight: dict[int, float] = {}
    order: dict[int, int] = {}
    members: dict[int, list[Any]] = defaultdict(list)
    mine: list[tuple[float, int, int]] = []  # (level of its own classes, order, -1 - index in owners)
    owners: list[Any] = []
    n = 0  # entries seen (the order of first sight breaks ties)
    for b, cls in shared.items():
        lv = own.get(b)
        if lv is not None:
            mine.append((lv, n, -1 - len(owners)))
            owners.append(b)
            n += 1
        for cid, m in cls:
            if cid not in weight:
                order[cid], weight[cid], used[cid] = n, 0.0, 0.0
                n += 1
            weight[cid] += m
            members[cid].append(b)
    heap = [(capacity[cid] / w, order[cid], cid) for cid, w in weight.items() if w > EPS]
    heap += mine
    heapq.heapify(heap)
    while unfrozen:
        while heap:  # drop classes with nothing left on them, refresh stale levels
            lv, o, cid = heap[0]
            if cid < 0:  # a bundle's own classes: a fixed level while it is unfrozen
                if owners[-1 - cid] not in unfrozen:
                    heapq.heappop(heap)
                    continue
                break
            w = weight[cid]
            if w <= EPS:
                heapq.heappop(heap)
                continue
            cur = (capacity[cid] - used[cid]) / w
            if cur != lv:
                heapq.heapreplace(heap, (cur, o, cid))
                continue
            break
        if not heap:
            for b in unfrozen:
                rates[b] = float("inf")
            break
        level, _, best = heapq.heappop(heap)
        level = max(level, 0.0)
        for b in (members[best] if best >= 0 else (owners[-1 - best],)):
            if b in unfrozen:
                unfrozen.discard(b)
                rates[b] = level
                for cid, m in shared[b]:
                    weight[cid] -= m
                    used[cid] += m * level
    return rates
