"""Where each device's main stream holds blamed time (simtrain.analysis.attribution's
BLAMED kinds: waits on the data-parallel stream), so that a pipeline wait whose sender
held none over the wait is known to stay a bubble without walking the sender's records.

Most waits are such (at 16,384 GPUs per-rank, a few thousand of a quarter of a million
are blamed on anything): `overlaps` answers with one bisection. It is exact: a wait's
attributed pieces (`_Timeline.kinds`) are cut from the sender's records over the wait,
so a blamed piece needs a blamed record, or a blamed piece of an attributed wait
(`add`ed as it is attributed), overlapping the wait; where one overlaps, the caller
works the pieces out as before."""

from __future__ import annotations

import bisect
from typing import Iterable

from simtrain.engine.timeline import Record


class BlamedSpans:
    def __init__(self, records: Iterable[Record]):
        self._spans: dict[int, list[tuple[float, float]]] = {}  # device -> (start, end) sorted by start
        self._starts: dict[int, list[float]] = {}
        self._reach: dict[int, list[float]] = {}  # device -> the latest end among spans[:i + 1]
        for r in records:
            self._spans.setdefault(r.device, []).append((r.start, r.end))
        for dev, spans in self._spans.items():
            spans.sort()
            self._index(dev, 0)

    def _index(self, dev: int, i: int) -> None:
        """Starts and running latest ends from position `i` on."""
        spans = self._spans[dev]
        starts = self._starts.setdefault(dev, [])
        reach = self._reach.setdefault(dev, [])
        del starts[i:], reach[i:]
        top = reach[-1] if reach else float("-inf")
        for s, e in spans[i:]:
            starts.append(s)
            top = e if e > top else top
            reach.append(top)

    def add(self, dev: int, start: float, end: float) -> None:
        """A blamed piece of an attributed wait on `dev`."""
        spans = self._spans.setdefault(dev, [])
        i = bisect.bisect_left(spans, (start, end))
        spans.insert(i, (start, end))
        self._index(dev, i)

    def overlaps(self, dev: int, t0: float, t1: float) -> bool:
        """Whether a blamed span of `dev` overlaps (t0, t1) (t0 < t1) by more than nothing:
        one that starts before t1 and ends after t0 (spans have positive length)."""
        starts = self._starts.get(dev)
        if not starts:
            return False
        k = bisect.bisect_left(starts, t1)
        return k > 0 and self._reach[dev][k - 1] > t0
