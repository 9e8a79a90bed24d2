"""Which link classes each active bundle shares with another, kept up to date as bundles
come and go, so that a rate recomputation visits only those.

A collective's ring crosses hundreds of link classes that no other active bundle uses;
a point-to-point transfer beside it shares one or two. In per-rank mode such components
are solved at every transfer that joins or leaves them: the search for the component
(`FlowNetwork._component`) follows shared classes only, and the max-min filling takes a
bundle's own classes as one entry at their lowest level (simtrain.network.maxmin). Most
often nothing needs solving at all: a newcomer that fits in the spare capacity beside
unchanged rates (`_fits`), or a bundle leaving neighbours that all keep a bottleneck
without it (`_unchanged_without`), leaves every other rate as it is; both test the
conditions of max-min fairness, whose allocation is unique, so the rates are those a
solve gives (to rounding). FlowNetwork extends this and calls `_join` / `_leave`
wherever a bundle enters or leaves the users of its classes.
"""

from __future__ import annotations

from math import fsum
from typing import Any


class Sharing:
    _users: Any  # link class -> set of active bundles on it (FlowNetwork)
    _class_capacity: list[float]
    env: Any
    rate_log: list | None

    def _join(self, b: Any) -> None:
        """`b` becomes a user of its classes: note the classes it shares, and those its
        first co-user now shares."""
        users = self._users
        shared = b.shared = set()
        b.split = None
        for cid, _ in b.classes:
            u = users[cid]
            if u:
                shared.add(cid)
                if len(u) == 1:
                    for other in u:
                        other.shared.add(cid)
                        other.split = None
            u.add(b)

    def _leave(self, b: Any) -> None:
        """`b` no longer uses its classes: a class left with one user is that user's own."""
        users = self._users
        for cid, _ in b.classes:
            u = users[cid]
            u.discard(b)
            if len(u) == 1:
                for other in u:
                    other.shared.discard(cid)
                    other.split = None
        if b.shared:  # (an empty one stays: nobody adds to the classes of a bundle that left)
            b.shared = set()
            b.split = None

    def _levels(self, b: Any) -> tuple:
        """(classes, classes sorted by cap/m as (cap/m, class), class -> multiplicity) of
        `b`, kept per compilation of the classes."""
        cached = b.levels
        if cached is None or cached[0] is not b.classes:
            caps = self._class_capacity
            cached = b.levels = (b.classes, sorted((caps[cid] / m, cid) for cid, m in b.classes), dict(b.classes))
        return cached

    def _split(self, b: Any) -> tuple[tuple[tuple[int, float], ...], float | None]:
        """`b`'s shared classes with their multiplicities, and the lowest cap/m over the
        classes only it uses (None: it shares all of them; most often the first class by
        that level is its own). Kept on the bundle until its shared classes or the classes
        themselves change (_join and _leave drop it)."""
        memo = b.split
        if memo is not None and memo[0] is b.classes:
            return memo[1]
        cached = self._levels(b)
        shared, mult = b.shared, cached[2]
        own = None
        for lv, cid in cached[1]:
            if cid not in shared:
                own = lv
                break
        out = tuple((cid, mult[cid]) for cid in shared), own
        b.split = (b.classes, out)
        return out

    def _fits(self, b: Any) -> float | None:
        """The max-min rate of newcomer `b` when it can take what its classes have to spare
        with every other rate as it is, else None (then the component is solved anew).
        Every other bundle keeps a saturated class on which it is the fastest (b only adds
        load where there is spare capacity, so not on those), and b gets one: its tightest
        class, where no other bundle may then be faster than b. That allocation is max-min
        fair, and the max-min fair allocation is unique: it is what the filling computes
        (to rounding), without revisiting the whole component. Not when a co-user is still
        in its start-up (the component would put it back), nor for logged runs."""
        if not b.shared or self.rate_log is not None:
            return None
        users, caps, now = self._users, self._class_capacity, self.env._now
        shared = b.shared
        x, tight = float("inf"), -1
        for cid, m in b.classes:
            load = 0.0
            if cid in shared:  # (summed exactly: a set's order follows where its bundles lie in memory)
                terms = []
                for other in users[cid]:
                    if other is not b:
                        if other.start > now:
                            return None
                        terms.append(self._levels(other)[2][cid] * other.rate)
                load = fsum(terms)
            lv = (caps[cid] - load) / m
            if lv < x:
                x, tight = lv, cid
        if not 0.0 < x < float("inf"):
            return None
        if tight in shared:
            for other in users[tight]:
                if other is not b and other.rate > x:
                    return None
        return x

    def _unchanged_without(self, b: Any, neighbours: set) -> bool:
        """Whether every rate stays as it is when `b` (still joined) leaves: each neighbour
        keeps a saturated class that `b` does not use on which no bundle is faster than it
        (its own classes' level, or a shared class). Then the allocation without `b` is
        max-min fair, hence the one a solve would give (to rounding). Saturated: within
        1e-12 of capacity; a neighbour tied with another within rounding is solved anew."""
        if self.rate_log is not None:
            return False
        users, caps, now = self._users, self._class_capacity, self.env._now
        mine = b.shared
        for o in neighbours:
            if o.start > now:
                return False
            shared, own = self._split(o)
            if own is not None and o.rate == own:
                continue
            r = o.rate
            for cid, _ in shared:
                if cid in mine:
                    continue
                terms, top = [], True
                for u in users[cid]:
                    if u.rate > r:
                        top = False
                        break
                    terms.append(self._levels(u)[2][cid] * u.rate)
                if top and fsum(terms) >= caps[cid] * (1 - 1e-12):
                    break
            else:
                return False
        return True
