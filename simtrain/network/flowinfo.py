"""What a flow network tells about itself (simtrain.network.flows.FlowNetwork extends
this): link utilisation over time from its rate log, whether bundle types have their
links to themselves, and a bundle's time alone on an idle network. Split from the flow
network so that each module reads in one sitting."""

from __future__ import annotations

from operator import attrgetter
from typing import Callable, Hashable, Iterable

from simtrain.hardware.topology import Link


class Introspection:
    def in_start_order(self) -> list:
        """The active bundles in the order they started: set order follows where the
        objects lie in memory, so sums over a set (bytes per link class) could differ
        between runs and between versions of the code in their last bit."""
        return sorted(self.active, key=attrgetter("seq"))

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
            self._advance(self.in_start_order())
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
