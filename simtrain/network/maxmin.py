"""Weighted max-min fair rates by progressive filling (Bertsekas & Gallager, Data Networks
§6.5.2), over link classes: what simtrain.network.flows.FlowNetwork solves whenever a
bundle starts or ends."""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any

EPS = 1e-12


def max_min_rates(bundles: dict[Any, list[tuple[int, float]]], capacity: list[float]) -> dict[Any, float]:
    """Weighted max-min fair rates by progressive filling.

    `bundles[b]` lists (link class, multiplicity m); a bundle at rate r puts m*r on that
    class. All unfrozen bundles rise together; when a class saturates, the bundles on it
    freeze at the current level. The next class to saturate comes from a heap of class
    levels (capacity left / weight of unfrozen bundles), refreshed lazily: freezing only
    raises the level of the other classes a frozen bundle uses, so a stale entry is never
    too high. Ties go to the class first seen, as a linear scan in that order would.
    """
    rates: dict[Any, float] = {}
    unfrozen = set(bundles)
    used: dict[int, float] = {}
    weight: dict[int, float] = {}
    order: dict[int, int] = {}
    members: dict[int, list[Any]] = defaultdict(list)
    for b, cls in bundles.items():
        for cid, m in cls:
            if cid not in weight:
                order[cid], weight[cid], used[cid] = len(order), 0.0, 0.0
            weight[cid] += m
            members[cid].append(b)
    heap = [(capacity[cid] / w, order[cid], cid) for cid, w in weight.items() if w > EPS]
    heapq.heapify(heap)
    while unfrozen:
        while heap:  # drop classes with nothing left on them, refresh stale levels
            lv, o, cid = heap[0]
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
        for b in members[best]:
            if b in unfrozen:
                unfrozen.discard(b)
                rates[b] = level
                for cid, m in bundles[b]:
                    weight[cid] -= m
                    used[cid] += m * level
    return rates
