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
    the shared ones (per-rank mode solves such components at every transfer).
    """
    rates: dict[Any, float] = {}
    unfrozen = set(bundles)
    used: dict[int, float] = {}
    weight: dict[int, float] = {}
    order: dict[int, int] = {}
    members: dict[int, list[Any]] = defaultdict(list)
    shared: dict[Any, list[tuple[int, float]]] = {}
    own: list[tuple[float, int, int]] = []  # (lowest level of its own classes, order, -1 - index)
    owners: list[Any] = []
    for b, cls in bundles.items():
        mine = None
        if users is None:
            keep = cls
        else:
            keep = []
            for c in cls:
                if len(users[c[0]]) == 1:
                    lv = capacity[c[0]] / c[1]
                    if mine is None:
                        mine = [lv, len(order) + len(own)]
                    elif lv < mine[0]:
                        mine[0] = lv
                else:
                    keep.append(c)
        shared[b] = keep
        for cid, m in keep:
            if cid not in weight:
                order[cid], weight[cid], used[cid] = len(order) + len(own), 0.0, 0.0
            weight[cid] += m
            members[cid].append(b)
        if mine is not None:
            own.append((mine[0], mine[1], -1 - len(owners)))
            owners.append(b)
    heap = [(capacity[cid] / w, order[cid], cid) for cid, w in weight.items() if w > EPS]
    heap += own
    heapq.heapify(heap)
    while unfrozen:
        while heap:  # drop classes with nothing left on them, refresh stale levels
            lv, o, cid = heap[0]
            if cid < 0:  # a bundle's own classes: fixed level while it is unfrozen
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
