"""A bundle in flight on the flow network (simtrain.network.flows): its bytes left, its
rate, its link classes and what to do when it is done."""

from __future__ import annotations

import itertools
from typing import Hashable

import simpy


class _Bundle:
    __slots__ = ("key", "remaining", "rate", "updated", "event", "version", "classes", "seq", "start", "then", "nbytes",
                 "shared", "levels", "alone", "split")
    _next = itertools.count()

    def __init__(self, key: Hashable, nbytes: float, event: simpy.Event | None, now: float, classes, then=None):
        self.seq = next(_Bundle._next)  # start order: sets of bundles are visited in it (deterministic runs)
        self.key = key
        self.remaining = nbytes
        self.nbytes = nbytes
        self.rate = 0.0
        self.updated = now
        self.start = now  # when it begins to move bytes (later than now: started alone, see transfer)
        self.event = event
        self.then = then  # called when done, instead of triggering `event`
        self.version = 0
        self.classes = classes  # list of (class id, multiplicity)
        self.shared: set[int] = set()  # classes another active bundle uses too (simtrain.network.sharing)
        self.levels = None  # (classes, sorted (cap / m, class id), multiplicities) for Sharing._split
        self.alone = None  # its per-flow rate alone on `classes`, when started alone (FlowNetwork._start_alone)
        self.split = None  # (classes, Sharing._split's answer) while `shared` is unchanged

    def done(self) -> None:
        if self.then is not None:
            self.then()
        else:
            self.event.succeed()
