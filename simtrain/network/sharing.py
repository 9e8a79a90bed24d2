"""Which link classes each active bundle shares with another, kept up to date as bundles
come and go, so that a rate recomputation visits only those.

A collective's ring crosses hundreds of link classes that no other active bundle uses;
a point-to-point transfer beside it shares one or two. In per-rank mode such components
are solved at every transfer that joins or leaves them: the search for the component
(`FlowNetwork._component`) follows shared classes only, and the max-min filling takes a
bundle's own classes as one entry at their lowest level (simtrain.network.maxmin).
FlowNetwork extends this and calls `_join` / `_leave` wherever a bundle enters or leaves
the users of its classes.
"""

from __future__ import annotations

from typing import Any


class Sharing:
    _users: Any  # link class -> set of active bundles on it (FlowNetwork)
    _class_capacity: list[float]

    def _join(self, b: Any) -> None:
        """`b` becomes a user of its classes: note the classes it shares, and those its
        first co-user now shares."""
        users = self._users
        shared = b.shared = set()
        for cid, _ in b.classes:
            u = users[cid]
            if u:
                shared.add(cid)
                if len(u) == 1:
                    for other in u:
                        other.shared.add(cid)
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
        b.shared = set()

    def _split(self, b: Any) -> tuple[list[tuple[int, float]], float | None]:
        """`b`'s shared classes with their multiplicities, and the lowest cap/m over the
        classes only it uses (None: it shares all of them). Its classes sorted by that
        level are kept per compilation of the classes (most often the first is its own)."""
        cached = b.levels
        if cached is None or cached[0] is not b.classes:
            caps = self._class_capacity
            cached = b.levels = (b.classes, sorted((caps[cid] / m, cid) for cid, m in b.classes), dict(b.classes))
        shared, mult = b.shared, cached[2]
        own = None
        for lv, cid in cached[1]:
            if cid not in shared:
                own = lv
                break
        return [(cid, mult[cid]) for cid in shared], own
