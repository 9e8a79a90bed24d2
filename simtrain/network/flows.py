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

from heapq import heappush
from operator import attrgetter
from collections import defaultdict
from typing import Any, Callable, Hashable, Iterable

import simpy
from simpy.events import NORMAL

from simtrain.hardware.topology import Link, Topology
from simtrain.network.batch import Batching
from simtrain.network.bundle import _Bundle
from simtrain.network.flowinfo import Introspection
from simtrain.network.lease import Lease, Leasing
from simtrain.network.maxmin import fill, max_min_rates  # noqa: F401  (max_min_rates re-exported: its users import it from here)
from simtrain.network.sharing import Sharing

EPS = 1e-12
FILL_CACHE = 50_000  # solved components kept, then the memo starts over (an MoE step meets ~8K)
_seq = attrgetter("seq")


class FlowNetwork(Introspection, Leasing, Sharing, Batching):
    def __init__(self, env: simpy.Environment, topology: Topology | None, free: bool = False):
        self.env = env
        self.topo = topology
        self.free = free
        self._loads: dict[Hashable, dict[Link, float]] = {}
        self._key_id: dict[Hashable, int] = {}
        self._solo_rate: dict[Hashable, float] = {}  # per-flow rate alone on an idle network
        caps = getattr(topology, "capacities", None)  # (a Topology's memo, shared; any object with link() will do)
        self._cap: dict[Link, float] = caps if isinstance(caps, dict) else {}  # link capacity cache
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
        self._alone_rate: dict[Hashable, float] = {}  # bundle type -> its per-flow rate alone (compiled classes)
        # bundle type -> seconds its transfers took beyond their idle-network time (link
        # sharing with other traffic); hotspots reports it per parallel dimension
        self.contention: dict[Hashable, float] = {}
        # (time, bundle seq, per-flow rate, bundle type) at every rate change when a list is
        # set here (traces: link utilisation over time); None: no log, no cost
        self.rate_log: list[tuple[float, int, float, Hashable]] | None = None
        self._leases: dict[int, Lease] = {}  # link class -> the lease on it (simtrain.network.lease)
        self.generation = 0  # how many times the link classes were compiled (class ids change)
        # solved components by their inputs (each bundle's shared classes and own level, in
        # start order) while the class capacities are these: the same exchange patterns recur
        # every micro-batch (an MoE step: 98% of its solves), and the filling is a pure function
        self._fills: dict[tuple, tuple[float, ...]] = {}
        self._fills_for: list[float] | None = None

    # ---- registration ---------------------------------------------------------------
    def register(self, key: Hashable, load: dict[Link, float]) -> None:
        """Declare a bundle type: `load[link]` = how many of its flows cross `link`."""
        if key in self._loads and self._loads[key] == load:
            return
        self._loads[key] = load
        self._key_id.setdefault(key, len(self._key_id))
        self._solo_rate.pop(key, None)
        self._dirty = True

    def adopt(self, other: "FlowNetwork") -> None:
        """Take the registrations and compiled link classes of `other` (same topology, no
        transfer yet): a sweep's identical layouts compile once. Nothing shared is mutated
        (registering more copies the dicts first, compiling builds new ones)."""
        if other._dirty or self.active:
            return
        self._loads, self._key_id = dict(other._loads), dict(other._key_id)
        self._solo_rate = dict(other._solo_rate)  # (_cap: the topology's, shared already)
        self._classes, self._class_capacity = other._classes, other._class_capacity
        self._class_links, self._class_users = other._class_links, other._class_users
        self._alone_rate = dict(other._alone_rate)
        self._dirty = False
        self.generation += 1

    def capacity(self, link: Link) -> float:
        c = self._cap.get(link)
        if c is None:
            c = self._cap[link] = self.topo.link(link).capacity
        return c

    def is_registered(self, key: Hashable) -> bool:
        return key in self._loads

    def _compile(self) -> None:
        if self._leases:  # class ids change: leased spans go on the network as bundles first
            self._break_all()
        self.generation += 1
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
        known = self._cap
        for link, users in signature.items():
            cap = known.get(link) or self.capacity(link)
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
        self._alone_rate = {}
        users_of: list[set[Hashable]] = [set() for _ in caps]
        for key, cls in classes.items():
            for cid in cls:
                users_of[cid].add(key)
        self._class_users = users_of
        self._users = defaultdict(set)
        for b in self.active:
            b.classes, b.alone = self._classes[b.key], None
            self._join(b)
        self._dirty = False

    # ---- transfers --------------------------------------------------------------------
    def transfer(self, key: Hashable, nbytes: float, latency: float = 0.0, then: Callable[[], None] | None = None):
        """An event that fires when a bundle of type `key` has moved `nbytes` per flow,
        after `latency` seconds of start-up (the alpha term); with `then`, no event: `then()`
        is called when it is done (returns None).

        A bundle whose links are idle when it is sent is started at once, moving bytes
        from now + latency at its rate alone: one event (its finish) instead of two. Should
        another bundle start on its links before that moment, it is put back to start then
        (`_reschedule`); if after, it has been moving alone since, as it would have."""
        done = self.env.event() if then is None else None
        self.transfers += 1
        if self.free or nbytes <= 0:
            ev = done if done is not None else self.env.event()
            if then is not None:
                ev.callbacks.append(lambda _e: then())
            if latency > 0 and not self.free:
                self.env.timeout(latency).callbacks.append(lambda _e: ev.succeed())
            else:
                ev.succeed()
            return done
        if latency > 0:
            if self._dirty:
                self._advance(self.in_start_order())
                self._compile()
            classes = self._classes.get(key)
            if self._leases and classes:
                self._claim(classes)
            alone = bool(classes)
            users = self._users
            for cid, _ in classes or ():
                if users[cid]:
                    alone = False
                    break
            if alone and self.rate_log is None:  # (a logged run keeps its rate changes in time order)
                self._start_alone(key, nbytes, latency, done, then, classes)
            else:
                self.env.timeout(latency).callbacks.append(lambda _e: self._start(key, nbytes, done, then))
        else:
            self._start(key, nbytes, done, then)
        return done

    def _start_alone(self, key, nbytes: float, latency: float, done, then, classes) -> None:
        now = self.env._now
        b = _Bundle(key, nbytes, done, now + latency, classes, then)
        self.bytes_moved += nbytes
        self.active.add(b)
        users = self._users
        for cid, _ in classes:  # (_join, where no class has a user: it shares none)
            users[cid].add(b)
        rate = self._alone_rate.get(key)
        if rate is None:
            caps = self._class_capacity
            rate = self._alone_rate[key] = min(caps[cid] / m for cid, m in classes)
        b.rate = b.alone = rate
        b.version = 1
        self._at_finish(b.start + nbytes / rate, b)  # (now + latency) + nbytes / rate: as a start then

    def _bundle(self, key: Hashable, nbytes: float, start: float, classes, then: Callable[[], None]) -> _Bundle:
        """A bundle that calls `then()` when done, moving bytes from `start` (lease.materialize)."""
        return _Bundle(key, nbytes, None, start, classes, then)

    def _at(self, t: float, value: Any) -> simpy.Event:
        """An event processed at time `t` (not now + (t - now), which may round otherwise)."""
        ev = simpy.Event(self.env)
        ev._ok, ev._value = True, value
        heappush(self.env._queue, (t, NORMAL, next(self.env._eid), ev))
        return ev

    def _start(self, key: Hashable, nbytes: float, done: simpy.Event | None, then=None) -> None:
        if self._dirty:
            self._advance(self.in_start_order())
            self._compile()
        if key not in self._classes:
            raise KeyError(f"bundle type {key!r} was never registered")
        if self._leases:
            self._claim(self._classes[key])
        b = _Bundle(key, nbytes, done, self.env._now, self._classes[key], then)
        self.bytes_moved += nbytes
        if not b.classes:  # no links at all (same device): instant
            if done is None:
                done = b.event = self.env.event()
                done.callbacks.append(lambda _e: then())
            done.succeed()
            return
        self.active.add(b)
        self._join(b)
        self._enter(b)

    def _enter(self, b: _Bundle) -> None:
        """Rates once `b` (joined) moves: its own rate alone beside the others where it
        fits in their spare capacity (Sharing._fits), else the component solved anew."""
        x = self._fits(b)
        if x is None:
            self._reschedule(self._component([b]))
            return
        b.rate = x
        b.version += 1
        self.env.timeout(max(b.remaining, 0.0) / x, (b, b.version)).callbacks.append(self._finish)

    def _put_back(self, b: _Bundle) -> None:
        """Started alone, still in its start-up: out (its finish void), in again at its start."""
        self.active.discard(b)
        self._leave(b)
        b.version += 1

        def activate(_e: Any) -> None:
            if self._leases:
                self._claim(b.classes)
            self.active.add(b)
            self._join(b)
            b.rate = 0.0
            self._enter(b)

        self._at(b.start, None).callbacks.append(activate)

    def _component(self, seeds: Iterable[_Bundle]) -> set[_Bundle]:
        """The bundles linked to `seeds` through shared classes (each one visited once)."""
        comp: set[_Bundle] = set(seeds)
        stack = list(comp)
        seen_cls: set[int] = set()
        users = self._users
        while stack:
            for cid in stack.pop().shared:  # (a class of b's alone leads nowhere else)
                if cid not in seen_cls:
                    seen_cls.add(cid)
                    new = users[cid] - comp
                    if new:
                        comp |= new
                        stack.extend(new)
        return comp

    def _advance(self, bundles: Iterable[_Bundle]) -> None:
        now = self.env._now
        for b in bundles:
            if b.start > now:  # started alone, still in its start-up: nothing moved yet
                continue
            dt = now - b.updated
            if dt > 0 and b.rate > 0:
                moved = b.rate * dt
                b.remaining -= moved
                for cid, mult in b.classes:
                    self.link_busy[cid] += moved * mult
            b.updated = now

    def _reschedule(self, comp: set[_Bundle]) -> None:
        now = self.env._now
        # in start order, not set order (object ids): simultaneous finishes (the record
        # order) and the bytes summed per link class are the same in every run
        order = sorted(comp, key=_seq) if len(comp) > 1 else tuple(comp)
        waiting = [b for b in order if b.start > now]
        if waiting:  # others now share the links of bundles still in their start-up
            for b in waiting:
                self._put_back(b)
            order = [b for b in order if b.start <= now]
            if not order:
                return
        self._advance(order)
        if len(order) == 1:  # alone on its links: the bottleneck class sets the rate
            (b,) = order
            caps = self._class_capacity
            rates = {b: min(caps[cid] / m for cid, m in b.classes)}
        else:
            rates = self._solve(order)
        log = self.rate_log
        for b in order:
            r = rates[b]
            if r == b.rate and b.version:
                continue
            b.rate = r
            b.version += 1
            if log is not None:
                log.append((now, b.seq, r, b.key))
            v = b.version
            dt = max(b.remaining, 0.0) / r if r > 0 else float("inf")
            if dt == float("inf"):
                continue
            self.env.timeout(dt, (b, v)).callbacks.append(self._finish)

    def _solve(self, order: list[_Bundle]) -> dict[_Bundle, float]:
        """Max-min rates of a component (simtrain.network.maxmin.fill), memoized on its inputs."""
        caps = self._class_capacity
        if self._fills_for is not caps or len(self._fills) > FILL_CACHE:
            self._fills, self._fills_for = {}, caps
        splits = [self._split(b) for b in order]
        key = tuple(splits)
        got = self._fills.get(key)
        if got is None:
            shared = {b: sh for b, (sh, _) in zip(order, splits)}
            own = {b: o for b, (_, o) in zip(order, splits)}
            solved = fill(shared, own, caps)
            got = self._fills[key] = tuple(solved[b] for b in order)
        return dict(zip(order, got))

    def _finish(self, ev: simpy.Event) -> None:
        self._end(*ev._value)  # (bundle, version)

    def _end(self, b: _Bundle, version: int) -> None:
        """A bundle's finish: void if rescheduled since."""
        active = self.active
        if b.version != version or b not in active:
            return
        now = self.env._now
        if b.start <= now:  # (as _advance((b,)))
            dt = now - b.updated
            if dt > 0 and b.rate > 0:
                moved = b.rate * dt
                b.remaining -= moved
                busy = self.link_busy
                for cid, mult in b.classes:
                    busy[cid] += moved * mult
            b.updated = now
        active.discard(b)
        key, classes = b.key, b.classes
        # its rate alone: noted on it when started alone, else cached per type while its
        # classes are the compiled ones (a compilation clears both)
        alone = b.alone
        if alone is None:
            current = classes is self._classes.get(key)
            alone = self._alone_rate.get(key) if current else None
        if alone is None:
            caps = self._class_capacity
            alone = min(caps[cid] / m for cid, m in classes)
            if current:
                self._alone_rate[key] = alone
        extra = now - b.start - b.nbytes / alone
        if extra > 1e-12:
            self.contention[key] = self.contention.get(key, 0.0) + extra
        if self.rate_log is not None:
            self.rate_log.append((now, b.seq, 0.0, key))
        neighbours: set[_Bundle] | None = None
        if b.shared:  # (most often none: a bundle alone on its links since it started)
            neighbours = set()
            all_users = self._users
            for cid in b.shared:
                neighbours |= all_users[cid]
            neighbours.discard(b)
            if neighbours and self._unchanged_without(b, neighbours):  # (Sharing: nobody's rate changes)
                neighbours = None
        self._leave(b)
        then = b.then
        if then is None:
            b.event.succeed()
        if neighbours:
            self._reschedule(self._component(neighbours))
        if then is not None:
            then()
