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
from typing import Any

import simpy
from simpy.events import NORMAL


class Batching:
    env: simpy.Environment
    _batch: list | None = None  # [time, last number, event] of the newest batched entry
    folded = 0  # finishes processed inside an entry after its first (each counts as an event)

    def _end(self, b: Any, version: int) -> None:  # (FlowNetwork: a bundle's finish)
        raise NotImplementedError

    def _at_finish(self, t: float, b: Any) -> None:
        """Bundle `b`'s finish (version 1) at time `t`."""
        env = self.env
        eid = next(env._eid)
        last = self._batch
        if last is not None and last[1] == eid - 1 and last[0] == t and last[2].callbacks is not None:
            last[2]._value.append((b, eid))
            last[1] = eid
            return
        ev = simpy.Event(env)
        ev._ok, ev._value = True, [(b, eid)]
        ev.callbacks.append(self._finish_batch)
        heappush(env._queue, (t, NORMAL, eid, ev))
        self._batch = [t, eid, ev]

    def _finish_batch(self, ev: simpy.Event) -> None:
        entries = ev._value
        queue, t = self.env._queue, self.env._now
        for j, (b, eid) in enumerate(entries):
            if j and queue:
                top = queue[0]
                if (top[0], top[1], top[2]) < (t, NORMAL, eid):  # comes first now: the rest waits its turn
                    rest = simpy.Event(self.env)
                    rest._ok, rest._value = True, entries[j:]
                    rest.callbacks.append(self._finish_batch)
                    heappush(queue, (t, NORMAL, eid, rest))
                    return
                self.folded += 1  # (events processed inside the entry, for progress reports)
            self._end(b, 1)
