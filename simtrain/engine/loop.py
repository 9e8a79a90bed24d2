"""The event loop: `simpy.Environment.run()` without a stop condition, with `step()`
inlined (one Python call less per event; the engine runs millions). Events are processed
in the same order, (time, priority, schedule order), with the same checks: an event that
failed and was not handled by a callback stops the run with its exception."""

from __future__ import annotations

from heapq import heappop
from typing import Callable

import simpy
from simpy.events import PENDING

from simtrain.network.batch import SameInstant


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


def drain_reporting(env: simpy.Environment, progress: Callable[[float, int], None], folded: Callable[[], int],
                    every: int) -> None:
    """`env.run()`, calling `progress(now, events processed so far)` each time another
    `every` events are processed; `folded()`: those processed inside shared queue entries."""
    step, steps, due = env.step, 0, every
    try:
        while True:
            step()
            steps += 1
            done = steps + folded()
            if done >= due:
                due += every
                progress(env._now, done)
    except simpy.core.EmptySchedule:
        pass


class Arrivals:
    """Events succeeded now, one right after the other (a TP group's activations landing
    together: their sends finish in one batch, simtrain.network.batch), as one entry of
    the queue (simtrain.network.batch.SameInstant): each draws its own number, is
    triggered at once and processed in its turn, in simpy's order."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._same = SameInstant(env, _run_callbacks)

    @property
    def folded(self) -> int:  # events processed inside an entry after its first
        return self._same.folded

    def succeed(self, ev: simpy.Event) -> None:
        """`ev.succeed()`, in the same place of simpy's order."""
        if ev._value is not PENDING:
            raise RuntimeError(f"{ev} has already been triggered")
        ev._ok, ev._value = True, None
        self._same.push(self.env._now, ev)


def _run_callbacks(ev: simpy.Event) -> None:
    callbacks, ev.callbacks = ev.callbacks, None
    for callback in callbacks:
        callback(ev)
