"""What-ifs on the hardware: slow devices (stragglers), compute jitter, degraded and
failed links. Applied to the plan's inputs, never to results: the engine simply sees a
slower device or a thinner link and everything downstream follows.
"""

from __future__ import annotations

import random
import zlib
from functools import cached_property
from typing import Hashable

import networkx as nx

from simtrain.hardware.topology import Link, LinkInfo, Topology
from simtrain.scenario.config import Scenario, WhatIfConfig
from simtrain.scenario.errors import SimtrainError, bad


def active(w: WhatIfConfig) -> bool:
    return bool(w.slow_devices and w.slowdown != 1.0) or w.random_slow_fraction > 0 or w.random_slowdown_sigma > 0 \
        or w.compute_jitter > 0 or bool(w.degraded_links and w.link_bandwidth_factor != 1.0) or bool(w.failed_links)


def check(s: Scenario, world: int) -> None:
    """Value checks (a bad value is an error even where it would have no effect)."""
    w = s.whatif
    for r in w.slow_devices:
        if not 0 <= r < world:
            raise bad("whatif.slow_devices", r, f"not a rank of this {world}-device layout", f"use ranks 0..{world - 1}")
    for name, v, lo in (("slowdown", w.slowdown, 0.0), ("link_bandwidth_factor", w.link_bandwidth_factor, 0.0)):
        if v <= lo:
            raise bad(f"whatif.{name}", v, "must be positive", "use e.g. 1.2 for 20% slower compute or 0.5 for half bandwidth")
    if not 0 <= w.random_slow_fraction <= 1:
        raise bad("whatif.random_slow_fraction", w.random_slow_fraction, "must be between 0 and 1", "use e.g. 0.01")
    for name in ("random_slowdown_sigma", "compute_jitter"):
        if not 0 <= getattr(w, name) < 0.5:  # a relative spread: from 0.5 on, factors max(0, 1 + N(0, s)) hit 0 often
            raise bad(f"whatif.{name}", getattr(w, name), "must be in [0, 0.5): a relative standard deviation",
                      "use e.g. 0.02 (2%)")
    # half a what-if would silently change nothing: refuse it
    chosen = bool(w.slow_devices) or w.random_slow_fraction > 0
    if w.slowdown != 1.0 and not chosen:
        raise bad("whatif.slowdown", w.slowdown, "but no device is chosen to slow, so nothing would change",
                  "name them in whatif.slow_devices (e.g. [0]) or give whatif.random_slow_fraction (e.g. 0.01)")
    if chosen and w.slowdown == 1.0:
        key, value = ("slow_devices", list(w.slow_devices)) if w.slow_devices else ("random_slow_fraction", w.random_slow_fraction)
        raise bad(f"whatif.{key}", value, "but whatif.slowdown is 1.0, so they would run at full speed",
                  "set whatif.slowdown, e.g. 1.2 for 20% slower compute")
    if w.link_bandwidth_factor != 1.0 and not w.degraded_links:
        raise bad("whatif.link_bandwidth_factor", w.link_bandwidth_factor, "but no link is named, so nothing would change",
                  'name the cables in whatif.degraded_links, e.g. ["0-leaf0"]')
    if w.degraded_links and w.link_bandwidth_factor == 1.0:
        raise bad("whatif.degraded_links", list(w.degraded_links), "but whatif.link_bandwidth_factor is 1.0, so they "
                  "would keep their bandwidth", "set whatif.link_bandwidth_factor, e.g. 0.5 for half bandwidth")


def device_factors(w: WhatIfConfig, world: int) -> dict[int, float]:
    """Compute-time factor per device (missing = 1.0), deterministic for a given seed."""
    out: dict[int, float] = {}
    rng = random.Random(w.seed)
    if w.random_slowdown_sigma > 0:
        for r in range(world):
            out[r] = 1.0 + abs(rng.gauss(0.0, w.random_slowdown_sigma))
    if w.random_slow_fraction > 0:
        k = round(w.random_slow_fraction * world)
        for r in rng.sample(range(world), k):
            out[r] = out.get(r, 1.0) * w.slowdown
    for r in w.slow_devices:
        out[r] = out.get(r, 1.0) * w.slowdown
    return {r: f for r, f in out.items() if f != 1.0}


def jitter(w: WhatIfConfig, key: str) -> float:
    """Per-action compute factor max(0, 1 + N(0, jitter)), stable across runs and processes."""
    if w.compute_jitter <= 0:
        return 1.0
    rng = random.Random(zlib.crc32(f"{w.seed}:{key}".encode()))
    return max(0.0, 1.0 + rng.gauss(0.0, w.compute_jitter))


def _parse_link(text: str, topo: Topology, field: str) -> tuple[Hashable, Hashable]:
    a, sep, b = text.partition("-")
    if not sep:
        raise bad(field, text, "not a link", 'write "u-v" with node names, e.g. "0-leaf0" (GPU 0 to its leaf switch)')
    nodes = []
    for x in (a, b):
        x = x.strip()
        node: Hashable = int(x) if x.isdigit() else x
        nodes.append(node)
    u, v = nodes
    if not topo.has_link(u, v):
        raise bad(field, text, f"no such link in topology {topo.name!r}",
                  'name a cable as "u-v" with node names from `simtrain topology NAME --json`, e.g. "0-leaf0"')
    return u, v


class Degraded(Topology):
    """A topology with some links thinner or gone; failed links are routed around."""

    def __init__(self, base: Topology, slow: set[Link], factor: float, failed: set[Link]):
        self.base, self.slow, self.factor, self.failed = base, slow, factor, failed
        self.name, self.description, self.device = base.name, base.description, base.device
        self.num_gpus, self.gpus_per_node = base.num_gpus, base.gpus_per_node
        self._routes: dict[tuple[int, int], list[tuple[Link, float]]] = {}

    def __getattr__(self, name: str):  # everything else (bisection, tiers, torus axes...) from the base
        return getattr(self.base, name)

    def node_of(self, gpu: int) -> int:
        return self.base.node_of(gpu)

    def nvlink_domains(self) -> list[int] | None:
        return self.base.nvlink_domains()

    def period(self) -> int | None:  # a thinner or failed cable breaks the translation symmetry
        return None

    def link(self, edge: Link) -> LinkInfo:
        info = self.base.link(edge)
        if edge in self.slow:
            return LinkInfo(info.capacity * self.factor, info.latency, info.kind)
        return info

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        r = self.base.route(src, dst)
        if self.failed.isdisjoint(r):
            return r
        path = nx.shortest_path(self._pruned, src, dst, weight="latency") if nx.has_path(self._pruned, src, dst) else None
        if path is None:
            self._reroute(src, dst)  # raises the one-line error
        return tuple(zip(path[:-1], path[1:]))

    @cached_property
    def detail(self) -> tuple[set, set]:
        """Fat-tree leaves and pods with a thinner or failed spine (core) link: their flows
        are listed per link there, so that the one link shows; elsewhere aggregated."""
        leaves, pods = set(), set()
        for u, v in self.slow | self.failed:
            for name in (u, v):
                if isinstance(name, str) and name.startswith("leaf") and name[4:].isdigit():
                    if isinstance(u, str) and isinstance(v, str):  # a leaf-spine cable
                        leaves.add(int(name[4:]))
                elif isinstance(name, str) and name.startswith("spine") and "_" in name:
                    other = v if name == u else u
                    if isinstance(other, str) and other.startswith("core"):
                        pods.add(int(name[5:].partition("_")[0]))
        return leaves, pods

    def route_load(self, src: int, dst: int) -> list[tuple[Link, float]]:
        try:  # per-link detail where a what-if touches a spine (core) link
            load = self.base.route_load(src, dst, detailed=self.detail)
        except TypeError:
            load = self.base.route_load(src, dst)
        if all(l not in self.failed for l, _ in load):
            return load
        return self._reroute(src, dst)

    def _reroute(self, src: int, dst: int) -> list[tuple[Link, float]]:
        """Split the flow evenly over every surviving shortest path (what adaptive routing
        or ECMP re-hashing does once the failed links are withdrawn)."""
        key = (src, dst)
        if key not in self._routes:
            try:
                paths = list(nx.all_shortest_paths(self._pruned, src, dst))
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                raise SimtrainError(
                    f"whatif.failed_links: no route from GPU {src} to GPU {dst} once {', '.join(f'{u}-{v}' for u, v in sorted(self.failed, key=str))} fail; "
                    "fail fewer links or pick a layout that keeps traffic off them") from None
            share: dict[Link, float] = {}
            for path in paths:
                for e in zip(path[:-1], path[1:]):
                    share[e] = share.get(e, 0.0) + 1.0 / len(paths)
            self._routes[key] = list(share.items())
        return self._routes[key]

    @cached_property
    def _pruned(self) -> nx.DiGraph:
        g = self.base.graph.copy()
        g.remove_edges_from(self.failed)
        return g

    @cached_property
    def graph(self) -> nx.DiGraph:  # type: ignore[override]
        g = self.base.graph.copy()
        for e in self.slow:
            if g.has_edge(*e):
                g.edges[e]["capacity"] *= self.factor
        g.remove_edges_from(self.failed)
        return g


def apply(topo: Topology, w: WhatIfConfig) -> Topology:
    if not (w.degraded_links and w.link_bandwidth_factor != 1.0) and not w.failed_links:
        return topo
    slow, failed = set(), set()
    for i, t in enumerate(w.degraded_links):
        u, v = _parse_link(t, topo, f"whatif.degraded_links[{i}]")
        slow |= {(u, v), (v, u)}
    for i, t in enumerate(w.failed_links):
        u, v = _parse_link(t, topo, f"whatif.failed_links[{i}]")
        failed |= {(u, v), (v, u)}
    return Degraded(topo, slow, w.link_bandwidth_factor, failed)
