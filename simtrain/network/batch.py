"""Finishes due at the same instant and scheduled one right after the other, as one entry
of simpy's event queue (FlowNetwork extends this).

In per-rank mode the eight members of a TP group leave their coalesced span together and
each sends its activation on its own rail: eight bundles started alone, finishing at the
same float, scheduled with consecutive event numbers. simpy orders events by (time,
priority, number), so nothing can come between such finishes: they are processed one
after the other either way, and one entry (one event, one push and pop) does for all.
Each finish still draws its own number (the run's event count is unchanged). Should an
event come before the next finish while the entry is processed (one scheduled meanwhile
at that instant with urgent priority), the rest is put back in the queue under the next
finish's own number, where its event would have been: the order stays simpy's exactly."""

from __future__ import annotations

from heapq import heappush
from typing import Any, Callable

import simpy
from simpy.events import NORMAL


class SameInstant:
    """Items due at one instant whose events were scheduled one right after the other,
    as one entry of simpy's queue: each draws its own number (`next(env._eid)`), and the
    entry is processed in the first one's place; `handle(item)` runs for each in turn. If
    an event comes before the next item meanwhile (an urgent one scheduled at that instant
    by a handler), the rest goes back in the queue under that item's own number."""

    def __init__(self, env: simpy.Environment, handle: Callable[[Any], None]):
        self.env = env
        self.handle = handle
        self._last: list | None = None  # [time, last number, entry event]
        self.folded = 0  # items processed inside an entry after its first (for progress reports)

    def push(self, t: float, item: Any) -> None:
        env = self.env
        eid = next(env._eid)
        last = self._last
        if last is not None and last[1] == eid - 1 and last[0] == t and last[2].callbacks is not None:
            last[2]._value.append((item, eid))
            last[1] = eid
            return
        ev = simpy.Event(env)
        ev._ok, ev._value = True, [(item, eid)]
        ev.callbacks.append(self._process)
        heappush(env._queue, (t, NORMAL, eid, ev))
        self._last = [t, eid, ev]

    def _process(self, ev: simpy.Event) -> None:
        items, queue, t = ev._value, self.env._queue, self.env._now
        handle = self.handle
        for j, (item, eid) in enumerate(items):
            if j and queue:
                top = queue[0]
                # (top[:3] < (t, NORMAL, eid) without building the tuples)
                tt = top[0]
                if tt < t or (tt == t and (top[1] < NORMAL or (top[1] == NORMAL and top[2] < eid))):  # comes first now: the rest waits its turn
                    rest = simpy.Event(self.env)
                    rest._ok, rest._value = True, items[j:]
                    rest.callbacks.append(self._process)
                    heappush(queue, (t, NORMAL, eid, rest))
                    return
                self.folded += 1
            handle(item)


class Batching:
    """FlowNetwork's finishes through a `SameInstant` queue (made on first use)."""
    env: simpy.Environment
    _same: SameInstant | None = None

    def _end(self, b: Any, version: int) -> None:  # (FlowNetwork: a bundle's finish)
        raise NotImplementedError

    @property
    def folded(self) -> int:  # finishes processed inside an entry after its first (each counts as an event)
        return self._same.folded if self._same is not None else 0

    def _at_finish(self, t: float, b: Any) -> None:
        """Bundle `b`'s finish (version 1) at time `t`."""
        same = self._same
        if same is None:
            same = self._same = SameInstant(self.env, lambda b: self._end(b, 1))
        same.push(t, b)
