"""Leases on link classes: a device that will run a stretch of collectives on links no
other bundle uses at the moment takes them as one span of simulated time instead of one
bundle per phase (simtrain.engine.program). FlowNetwork extends this.

While a lease holds, every bundle that is about to use one of its link classes (a
transfer sent, a bundle starting after its start-up, one put back coming in again) and a
recompilation of the link classes first break it: the owner's `on_break()` is called at
that moment and puts the collective it is in the middle of on the network as the bundle
`transfer` would have made for it (`materialize`), so the newcomer shares the links with
it from then on exactly as without the lease. Phases taken alone are charged to the links
(`charge`) as `run_alone` charges them. `run_alone` itself (phases on links of their
own, one event at the end) is here too.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

import simpy


class Lease:
    __slots__ = ("cids", "on_break")

    def __init__(self, cids: frozenset[int], on_break: Callable[[], None]):
        self.cids = cids
        self.on_break = on_break


class Leasing:
    def phase_classes(self, key: Hashable) -> list[tuple[int, float]]:
        """(link class, multiplicity) of a registered bundle type, compiled now."""
        if self._dirty:
            self._advance(self.in_start_order())
            self._compile()
        return self._classes.get(key) or []

    def rate_alone(self, key: Hashable, classes: list[tuple[int, float]]) -> float:
        rate = self._alone_rate.get(key)
        if rate is None:
            caps = self._class_capacity
            rate = self._alone_rate[key] = min(caps[cid] / m for cid, m in classes)
        return rate

    def phase_end(self, key: Hashable, nbytes: float, latency: float, t: float) -> float:
        """When a phase sent at `t` on idle links ends: the float `transfer` (or
        `run_alone`) gives it."""
        t = t + latency if latency > 0 else t
        if nbytes > 0:
            classes = self.phase_classes(key)
            if classes:
                t = t + nbytes / self.rate_alone(key, classes)
        return t

    def idle(self, cids: Iterable[int]) -> bool:
        """No bundle uses, and no lease holds, any of these link classes."""
        users, leases = self._users, self._leases
        for cid in cids:
            if users.get(cid) or cid in leases:
                return False
        return True

    def lease(self, cids: frozenset[int], on_break: Callable[[], None]) -> Lease:
        lease = Lease(cids, on_break)
        for cid in cids:
            self._leases[cid] = lease
        return lease

    def release(self, lease: Lease) -> None:
        leases = self._leases
        for cid in lease.cids:
            if leases.get(cid) is lease:
                del leases[cid]

    def _claim(self, classes: list[tuple[int, float]]) -> None:
        """A bundle is about to use `classes`: break the leases on them first."""
        leases = self._leases
        for cid, _ in classes:
            lease = leases.get(cid)
            if lease is not None:
                self.release(lease)
                lease.on_break()

    def _break_all(self) -> None:
        for lease in list(dict.fromkeys(self._leases.values())):
            self.release(lease)
            lease.on_break()

    def charge(self, key: Hashable, nbytes: float) -> None:
        """Account a phase that ran alone (as `run_alone` does)."""
        self.transfers += 1
        classes = self._classes.get(key)
        if nbytes > 0 and classes:
            self.bytes_moved += nbytes
            busy = self.link_busy
            for cid, m in classes:
                busy[cid] += nbytes * m

    def materialize(self, key: Hashable, nbytes: float, latency: float, start: float, then: Callable[[], None]) -> None:
        """Put on the network the phase sent alone at `start` (not after now) and not
        finished yet, in the state `transfer` would have it in now; `then()` when done."""
        self.transfers += 1
        classes = self._classes.get(key)
        if nbytes <= 0 or not classes:  # no bytes on links: done after the start-up
            self._at(start + latency if latency > 0 else start, None).callbacks.append(lambda _e: then())
            if nbytes > 0:
                self.bytes_moved += nbytes
            return
        b = self._bundle(key, nbytes, start + latency if latency > 0 else start, classes, then)
        self.bytes_moved += nbytes
        self.active.add(b)
        self._join(b)
        b.rate = self.rate_alone(key, classes)
        b.version = 1
        self._at(b.start + nbytes / b.rate, (b, 1)).callbacks.append(self._finish)

    def run_alone(self, phases) -> simpy.Event | None:
        """Run `phases` (key, nbytes, latency) one after another on links no other bundle
        type uses (`exclusive`): they take their time alone, as `transfer` would give it
        (the same float arithmetic), and their bytes are charged to the links. One event
        at the end, or None when that takes no time."""
        if self._dirty:
            self._advance(self.in_start_order())
            self._compile()
        now = t = self.env.now
        caps = self._class_capacity
        for ph in phases:
            t = t + ph.latency if ph.latency > 0 else t
            self.transfers += 1
            classes = self._classes.get(ph.key)
            if ph.nbytes > 0 and classes:
                rate = self._alone_rate.get(ph.key)
                if rate is None:
                    rate = self._alone_rate[ph.key] = min(caps[cid] / m for cid, m in classes)
                t = t + ph.nbytes / rate
                self.bytes_moved += ph.nbytes
                for cid, m in classes:
                    self.link_busy[cid] += ph.nbytes * m
        return None if t == now else self._at(t, None)
