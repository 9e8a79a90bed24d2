"""The event loop: `simpy.Environment.run()` without a stop condition, with `step()`
inlined (one Python call less per event; the engine runs millions). Events are processed
in the same order, (time, priority, schedule order), with the same checks: an event that
failed and was not handled by a callback stops the run with its exception."""

from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL, PENDING


def drain(env: simpy.Environment) -> None:
    """Process every scheduled event, as `env.run()` does."""
    queue = env._queue
    pop = heappop
    while queue:
        env._now, _, _, event = pop(queue)
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):  # (as Environment.step)
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


class Arrivals:
    """Events succeeded now, one right after the other (a TP group's activations landing
    together: their sends finish in one batch, simtrain.network.batch), as one entry of
    the queue: numbers consecutive at the same instant and priority, so nothing comes
    between them in simpy's order; each draws its own number, is triggered at once and
    processed in its turn. If an event comes first meanwhile (an urgent one scheduled at
    that instant by a callback), the rest goes back under the next one's own number."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._last: list | None = None  # [time, last number, entry event]
        self.folded = 0  # events processed inside an entry after its first

    def succeed(self, ev: simpy.Event) -> None:
        """`ev.succeed()`, in the same place of simpy's order."""
        if ev._value is not PENDING:
            raise RuntimeError(f"{ev} has already been triggered")
        env = self.env
        ev._ok, ev._value = True, None
        eid = next(env._eid)
        now = env._now
        last = self._last
        if last is not None and last[1] == eid - 1 and last[0] == now and last[2].callbacks is not None:
            last[2]._value.append((ev, eid))
            last[1] = eid
            return
        entry = simpy.Event(env)
        entry._ok, entry._value = True, [(ev, eid)]
        entry.callbacks.append(self._process)
        heappush(env._queue, (now, NORMAL, eid, entry))
        self._last = [now, eid, entry]

    def _process(self, entry: simpy.Event) -> None:
        items, queue, t = entry._value, self.env._queue, self.env._now
        for j, (ev, eid) in enumerate(items):
            if j and queue:
                top = queue[0]
                if (top[0], top[1], top[2]) < (t, NORMAL, eid):
                    rest = simpy.Event(self.env)
                    rest._ok, rest._value = True, items[j:]
                    rest.callbacks.append(self._process)
                    heappush(queue, (t, NORMAL, eid, rest))
                    return
                self.folded += 1  # (events processed inside the entry, for progress reports)
            callbacks, ev.callbacks = ev.callbacks, None
            for callback in callbacks:
                callback(ev)
