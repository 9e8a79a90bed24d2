"""Flow-level network model over the topology: max-min fair sharing of directed links.

A *bundle* is a set of flows that start together, each carrying the same number of bytes
and advancing at the same rate: the flows of one collective phase (a ring step pattern
is paced by its slowest flow), or one point-to-point transfer, together with the
identical copies that other process groups run at the same time (symmetric mode). A
bundle type is registered once with its *load*: link -> number of its flows on that link.
At run time the bundle's rate r (bytes/s per flow) is set by max-min fairness
(progressive filling, Bertsekas & Gallager, Data Networks §6.5.2) over all active bundles:
on every link the flows' demand sum(load * r) stays within capacity, and no flow can go
faster without slowing one that is no faster. Rates are recomputed when a bundle starts
or ends, only for the bundles that share links with it, directly or through others.

Speed: links on which every bundle type has the same multiplicity (its "signature") are
interchangeable for the fair-share computation, so they are merged into one link class.
With identical data-parallel replicas this folds thousands of links into a handful.
"""

from __future__ import annotations

import heapq
import itertools
from operator import attrgetter
from collections import defaultdict
from typing import Any, Callable, Hashable, Iterable

import simpy

from simtrain.hardware.topology import Link, Topology

EPS = 1e-12
_seq = attrgetter("seq")


class _Bundle:
    __slots__ = ("key", "remaining", "rate", "updated", "event", "version", "classes", "seq", "started", "nbytes")
    _next = itertools.count()

    def __init__(self, key: Hashable, nbytes: float, event: simpy.Event, now: float, classes):
        self.seq = next(_Bundle._next)  # start order: sets of bundles are visited in it (deterministic runs)
        self.key = key
        self.remaining = nbytes
        self.nbytes = nbytes
        self.rate = 0.0
        self.updated = now
        self.started = now
        self.event = event
        self.version = 0
        self.classes = classes  # list of (class id, multiplicity)


class FlowNetwork:
    def __init__(self, env: simpy.Environment, topology: Topology | None, free: bool = False):
        self.env = env
        self.topo = topology
        self.free = free
        self._loads: dict[Hashable, dict[Link, float]] = {}
        self._key_id: dict[Hashable, int] = {}
        self._solo_rate: dict[Hashable, float] = {}  # per-flow rate alone on an idle network
        self._cap: dict[Link, float] = {}  # link capacity cache
        self._class_users: list[set[Hashable]] = []  # link class -> bundle types using it
        self._dirty = False
        self._classes: dict[Hashable, list[tuple[int, float]]] = {}
        self._class_capacity: list[float] = []
        self._class_links: list[list[Link]] = []
        self._users: dict[int, set[_Bundle]] = defaultdict(set)
        self.active: set[_Bundle] = set()
        self.bytes_moved = 0.0
        self.transfers = 0
        self.link_busy: dict[int, float] = defaultdict(float)  # class id -> byte-seconds carried
        # bundle type -> seconds its transfers took beyond their idle-network time (link
        # sharing with other traffic); hotspots reports it per parallel dimension
        self.contention: dict[Hashable, float] = {}
        # (time, bundle seq, per-flow rate, bundle type) at every rate change when a list is
        # set here (traces: link utilisation over time); None: no log, no cost
        self.rate_log: list[tuple[float, int, float, Hashable]] | None = None

    # ---- registration ---------------------------------------------------------------
    def register(self, key: Hashable, load: dict[Link, float]) -> None:
        """Declare a bundle type: `load[link]` = how many of its flows cross `link`."""
        if key in self._loads and self._loads[key] == load:
            return
        self._loads[key] = load
        self._key_id.setdefault(key, len(self._key_id))
        self._solo_rate.pop(key, None)
        self._dirty = True

    def capacity(self, link: Link) -> float:
        c = self._cap.get(link)
        if c is None:
            c = self._cap[link] = self.topo.link(link).capacity
        return c

    def is_registered(self, key: Hashable) -> bool:
        return key in self._loads

    def _compile(self) -> None:
        signature: dict[Link, list[tuple[int, float]]] = defaultdict(list)
        ids = self._key_id
        for key, load in self._loads.items():
            kid = ids[key]
            for link, mult in load.items():
                signature[link].append((kid, mult))
        by_id = {v: k for k, v in ids.items()}
        cls_of_sig: dict[Any, int] = {}
        caps: list[float] = []
        links: list[list[Link]] = []
        classes: dict[Hashable, dict[int, float]] = defaultdict(dict)
        for link, users in signature.items():
            cap = self.capacity(link)
            sig = (cap, tuple(users))  # users are appended in key order: already canonical
            cid = cls_of_sig.get(sig)
            if cid is None:
                cid = cls_of_sig[sig] = len(caps)
                caps.append(cap)
                links.append([])
                for kid, mult in users:
                    classes[by_id[kid]][cid] = mult
            links[cid].append(link)
        self._classes = {k: list(v.items()) for k, v in classes.items()}
        for k in self._loads:
            self._classes.setdefault(k, [])
        self._class_capacity = caps
        self._class_links = links
        users_of: list[set[Hashable]] = [set() for _ in caps]
        for key, cls in classes.items():
            for cid in cls:
                users_of[cid].add(key)
        self._class_users = users_of
        self._users = defaultdict(set)
        for b in self.active:
            b.classes = self._classes[b.key]
            for cid, _ in b.classes:
                self._users[cid].add(b)
        self._dirty = False

    # ---- transfers --------------------------------------------------------------------
    def transfer(self, key: Hashable, nbytes: float, latency: float = 0.0) -> simpy.Event:
        """An event that fires when a bundle of type `key` has moved `nbytes` per flow,
        after `latency` seconds of start-up (the alpha term)."""
        done = self.env.event()
        self.transfers += 1
        if self.free:
            done.succeed()
            return done
        if nbytes <= 0:
            if latency > 0:
                self.env.timeout(latency).callbacks.append(lambda _e: done.succeed())
            else:
                done.succeed()
            return done
        if latency > 0:
            self.env.timeout(latency).callbacks.append(lambda _e: self._start(key, nbytes, done))
        else:
            self._start(key, nbytes, done)
        return done

    def _start(self, key: Hashable, nbytes: float, done: simpy.Event) -> None:
        if self._dirty:
            self._advance(self.active)
            self._compile()
        if key not in self._classes:
            raise KeyError(f"bundle type {key!r} was never registered")
        b = _Bundle(key, nbytes, done, self.env.now, self._classes[key])
        self.bytes_moved += nbytes
        if not b.classes:  # no links at all (same device): instant
            done.succeed()
            return
        self.active.add(b)
        for cid, _ in b.classes:
            self._users[cid].add(b)
        self._reschedule(self._component([b]))

    def _component(self, seeds: Iterable[_Bundle]) -> set[_Bundle]:
        comp: set[_Bundle] = set()
        stack = list(seeds)
        seen_cls: set[int] = set()
        while stack:
            b = stack.pop()
            if b in comp:
                continue
            comp.add(b)
            for cid, _ in b.classes:
                if cid not in seen_cls:
                    seen_cls.add(cid)
                    stack.extend(self._users[cid] - comp)
        return comp

    def _advance(self, bundles: Iterable[_Bundle]) -> None:
        now = self.env.now
        for b in bundles:
            dt = now - b.updated
            if dt > 0 and b.rate > 0:
                moved = b.rate * dt
                b.remaining -= moved
                for cid, mult in b.classes:
                    self.link_busy[cid] += moved * mult
            b.updated = now

    def _reschedule(self, comp: set[_Bundle]) -> None:
        self._advance(comp)
        if len(comp) == 1:  # alone on its links: the bottleneck class sets the rate
            (b,) = comp
            caps = self._class_capacity
            rates = {b: min(caps[cid] / m for cid, m in b.classes)}
            order = (b,)
        else:
            # in start order, not set order (object ids): simultaneous finishes, and so
            # the timeline's record order, are then the same in every run
            order = sorted(comp, key=_seq)
            rates = max_min_rates({b: b.classes for b in order}, self._class_capacity)
        log = self.rate_log
        for b in order:
            r = rates[b]
            if r == b.rate and b.version:
                continue
            b.rate = r
            b.version += 1
            if log is not None:
                log.append((self.env.now, b.seq, r, b.key))
            v = b.version
            dt = max(b.remaining, 0.0) / r if r > 0 else float("inf")
            if dt == float("inf"):
                continue
            self.env.timeout(dt).callbacks.append(self._finisher(b, v))

    def _finisher(self, b: _Bundle, version: int) -> Callable[[Any], None]:
        def finish(_e: Any) -> None:
            if b.version != version or b not in self.active:
                return
            self._advance([b])
            self.active.discard(b)
            caps = self._class_capacity
            extra = self.env.now - b.started - b.nbytes / min(caps[cid] / m for cid, m in b.classes)
            if extra > 1e-12:
                self.contention[b.key] = self.contention.get(b.key, 0.0) + extra
            if self.rate_log is not None:
                self.rate_log.append((self.env.now, b.seq, 0.0, b.key))
            neighbours: set[_Bundle] = set()
            for cid, _ in b.classes:
                users = self._users[cid]
                users.discard(b)
                neighbours |= users
            b.event.succeed()
            if neighbours:
                self._reschedule(self._component(neighbours))

        return finish

    # ---- introspection ----------------------------------------------------------------
    def link_series(self, links: Iterable[Link]) -> dict[Link, list[tuple[float, float]]]:
        """Utilisation (0..1) over time of each of `links`, from `rate_log`: steps at every
        rate change of a bundle crossing the link (its load on the link x its per-flow rate,
        summed, over the link's capacity)."""
        links = list(links)
        out: dict[Link, list[tuple[float, float]]] = {l: [(0.0, 0.0)] for l in links}
        if not self.rate_log:
            return out
        current: dict[Link, dict[int, float]] = {l: {} for l in links}
        for t, seq, rate, key in self.rate_log:
            load = self._loads.get(key, {})
            for l in links:
                m = load.get(l)
                if not m:
                    continue
                cur = current[l]
                if rate > 0:
                    cur[seq] = m * rate
                else:
                    cur.pop(seq, None)
                u = sum(cur.values()) / self.capacity(l)
                series = out[l]
                if series[-1][0] == t:
                    series[-1] = (t, u)
                else:
                    series.append((t, u))
        return out

    def exclusive(self, keys: Iterable[Hashable], ignore: Callable[[Hashable], bool] = lambda k: False) -> bool:
        """True when no bundle type outside `keys` (and not `ignore`d: e.g. the same group's
        alternative algorithms, which never run at the same time) uses any link that `keys`
        use: their transfers then always run at their idle-network speed, exactly."""
        keys = set(keys)
        if self._dirty:
            self._advance(self.active)
            self._compile()
        for k in keys:
            for cid, _ in self._classes[k]:
                for other in self._class_users[cid]:
                    if other not in keys and not ignore(other):
                        return False
        return True

    def uncontended_time(self, key: Hashable, nbytes: float, latency: float = 0.0) -> float:
        """Time a bundle would take alone on an idle network (for algorithm choice)."""
        if self.free:
            return 0.0
        if nbytes <= 0 or not self._loads[key]:
            return latency
        rate = self._solo_rate.get(key)
        if rate is None:
            rate = self._solo_rate[key] = min(self.capacity(l) / m for l, m in self._loads[key].items())
        return latency + nbytes / rate


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
