"""The event loop: `simpy.Environment.run()` without a stop condition, with `step()`
inlined (one Python call less per event; the engine runs millions). Events are processed
in the same order, (time, priority, schedule order), with the same checks: an event that
failed and was not handled by a callback stops the run with its exception."""

from __future__ import annotations

from heapq import heappop

import simpy


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
