"""TPU 3D tori (`kind = "torus"`; listed in simtrain.hardware.load.BUILDERS). Collectives
along the torus axes: simtrain.network.collectives.torus_phases.

A slice of X x Y x Z chips; chip (x, y, z) is rank x + X*(y + Y*z). Every chip has one ICI
link pair to its +1 and -1 neighbour on each axis; with wraparound the last chip of an
axis is linked back to the first (Google Cloud TPU docs: slices of one 4x4x4 cube or more
are full 3D tori; smaller ones are meshes). Routes are dimension-ordered (x, then y, then
z), each axis the shorter way round (ties: the + direction), so a route has
    hops = sum over axes of min(d, L - d)   (torus axis; |d| on a mesh axis),
d = |coordinate difference|, L = axis length. Routing is arithmetic, no graph search.

Slice shape: `shape = [x, y, z]` in the file, or chosen from the device count N: among
all x <= y <= z with x*y*z = N that fit the pod (`pod_shape`, sorted), the most cubic one
(smallest longest axis, then smallest difference between longest and shortest axis);
e.g. 64 -> 4x4x4, 128 -> 4x4x8, 512 -> 8x8x8, 4096 -> 16x16x16, 8960 -> 16x20x28, as in
Google's slice tables. The longest axis is z, the slowest in rank order. An explicit
`shape` may exceed the pod (hypothetical machines, e.g. for benchmarks).

`node_of(chip)` is the TPU host (`chips_per_host` consecutive ranks; a v4/v5p host has
4 chips): it matters little on ICI, but hierarchical algorithms group by it.

Bisection bandwidth: the standard one of a k-ary n-cube (Dally & Towles, Principles and
Practices of Interconnection Networks, 2004, §3.3): cut perpendicular to the longest axis
L into two halves; the cut crosses N/L links per plane, twice with wraparound, so
    B_bisect = 2 * N / L * c   (one direction; N/L * c on a mesh axis).
TPU v4 pod 16x16x16 at c = 45 GB/s: 2 * 256 * 45e9 = 23 TB/s; Google quotes 24 TB/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import networkx as nx

from simtrain.hardware.devices import Device
from simtrain.hardware.topology import Link, LinkInfo, Topology, check_link_spec, resolve_device
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import parse_dataclass
from simtrain.scenario.units import US, gbps_to_bytes_per_s


@dataclass(frozen=True)
class ICISpec:
    bandwidth_gbps: float = 800.0  # per link per direction (wire rate)
    latency_us: float = 1.0  # per hop
    efficiency: float = 0.9  # achievable fraction of the wire rate


@dataclass(frozen=True)
class TorusSpec:
    name: str = ""
    description: str = ""
    kind: str = "torus"
    device: str = "TPU-v5p"
    chips_per_host: int = 4
    shape: list = field(default_factory=list)  # [x, y, z]; empty: chosen from the device count
    pod_shape: list = field(default_factory=lambda: [16, 20, 28])
    wraparound: bool = True  # full torus for slices made of whole 4x4x4 cubes


def slice_shape(n: int, pod: Sequence[int]) -> tuple[int, int, int] | None:
    """The most cubic x <= y <= z with x*y*z = n that fits the pod; None if none does."""
    p = sorted(pod)
    best = None
    for x in range(1, int(round(n ** (1 / 3))) + 2):
        if n % x:
            continue
        for y in range(x, int(math.isqrt(n // x)) + 1):
            if (n // x) % y:
                continue
            z = n // (x * y)
            if z < y or x > p[0] or y > p[1] or z > p[2]:
                continue
            key = (z, z - x)
            if best is None or key < best[0]:
                best = (key, (x, y, z))
    return best[1] if best else None


class Torus(Topology):
    """A 3D torus (or mesh) of TPU chips with dimension-ordered routing."""

    def __init__(self, spec: TorusSpec, ici: ICISpec, shape: tuple[int, int, int], device: Device):
        self.name, self.description, self.device = spec.name, spec.description, device
        self.spec, self.ici = spec, ici
        self.shape = shape
        self.num_gpus = shape[0] * shape[1] * shape[2]
        self.gpus_per_node = spec.chips_per_host
        whole_cubes = all(L % 4 == 0 for L in shape)
        # an axis wraps when the slice is whole cubes and the axis has a separate wrap link
        self.wrap = tuple(spec.wraparound and whole_cubes and L > 2 for L in shape)
        self._ici = LinkInfo(gbps_to_bytes_per_s(ici.bandwidth_gbps) * ici.efficiency, ici.latency_us * US, "ici")
        self._strides = (1, shape[0], shape[0] * shape[1])
        X, Y, _ = shape
        # coordinates of every rank, computed once (routing is called per flow)
        self._coords = [(r % X, (r // X) % Y, r // (X * Y)) for r in range(self.num_gpus)]

    # --- coordinates ----------------------------------------------------------------
    def coord(self, rank: int) -> tuple[int, int, int]:
        if 0 <= rank < self.num_gpus:
            return self._coords[rank]
        X, Y, _ = self.shape
        x, r = rank % X, rank // X
        return x, r % Y, r // Y

    def rank(self, c: Sequence[int]) -> int:
        X, Y, _ = self.shape
        return c[0] + X * (c[1] + Y * c[2])

    def _axis_steps(self, a: int, src: int, dst: int) -> tuple[int, int]:
        """(direction +1/-1, hops) along axis a from coordinate src to dst."""
        L = self.shape[a]
        if self.wrap[a]:
            fwd = (dst - src) % L
            return (1, fwd) if fwd <= L - fwd else (-1, L - fwd)
        return (1 if dst >= src else -1), abs(dst - src)

    def hops(self, src: int, dst: int) -> int:
        cs, cd = self.coord(src), self.coord(dst)
        return sum(self._axis_steps(a, cs[a], cd[a])[1] for a in range(3))

    def route_latency(self, src: int, dst: int) -> float:
        return self.hops(src, dst) * self._ici.latency  # every hop is one ICI link

    def route(self, src: int, dst: int) -> tuple[Link, ...]:
        """Dimension-ordered: x first, then y, then z, each the shorter way round."""
        if src == dst:
            return ()
        c = list(self.coord(src))
        cd = self.coord(dst)
        cur = src
        path: list[Link] = []
        for a in range(3):
            step, n = self._axis_steps(a, c[a], cd[a])
            L, stride = self.shape[a], self._strides[a]
            for _ in range(n):
                nxt_c = (c[a] + step) % L
                nxt = cur + (nxt_c - c[a]) * stride
                path.append((cur, nxt))
                c[a], cur = nxt_c, nxt
        return tuple(path)

    def link(self, edge: Link) -> LinkInfo:
        return self._ici

    def period(self) -> int | None:
        """One z-plane: shifting ranks by X*Y moves every chip one step along z, an
        automorphism when z wraps around (dimension-ordered routes, the shorter way round
        with ties to +, commute with it)."""
        X, Y, Z = self.shape
        return X * Y if self.wrap[2] else None

    def orbit_link(self, link: Link, period: int) -> Link:
        u, v = link
        shift = u - u % period
        return (u - shift, (v - shift) % self.num_gpus)

    def has_link(self, u, v) -> bool:
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < self.num_gpus for x in (u, v)):
            return False
        return v in self.neighbours(u)

    def neighbours(self, rank: int) -> list[int]:
        c = self.coord(rank)
        out = []
        for a in range(3):
            L = self.shape[a]
            for step in (1, -1):
                v = c[a] + step
                if 0 <= v < L or (self.wrap[a] and L > 2):
                    n = self.rank(c[:a] + ((v % L),) + c[a + 1:])
                    if n != rank and n not in out:
                        out.append(n)
        return out

    @cached_property
    def graph(self) -> nx.DiGraph:
        G = nx.DiGraph()
        info = self._ici
        for r in range(self.num_gpus):
            G.add_node(r, kind="gpu", device=self.device.name)
        for r in range(self.num_gpus):
            for n in self.neighbours(r):
                G.add_edge(r, n, capacity=info.capacity, latency=info.latency, kind=info.kind)
        return G

    # --- summaries --------------------------------------------------------------------
    def inventory(self) -> dict[str, Any]:
        """Every chip links to its neighbours along each axis: an axis of length L has L
        cables per line with wraparound (L > 2), L - 1 without; N / L lines."""
        cables = 0
        for a, L in enumerate(self.shape):
            if L > 1:
                cables += (self.num_gpus // L) * (L if self.wrap[a] else L - 1)
        return {"switches": {}, "links": {"ici": (cables, [self._ici.capacity])} if cables else {},
                "hosts": -(-self.num_gpus // self.gpus_per_node)}

    def tier_bandwidth(self) -> list[tuple[str, float]]:
        links = len(self.neighbours(0))
        return [("ici link", self._ici.capacity), (f"ici per chip ({links} links)", links * self._ici.capacity)]

    def bisection_bandwidth(self) -> float:
        """Cut perpendicular to the longest axis: 2*N/L links with wraparound, N/L without."""
        if self.num_gpus < 2:
            return 0.0
        a = max(range(3), key=lambda i: (self.shape[i], i))
        L = self.shape[a]
        return (2 if self.wrap[a] else 1) * (self.num_gpus // L) * self._ici.capacity

    # --- collectives ------------------------------------------------------------------
    def axis_box(self, group: Sequence[int]) -> list[int] | None:
        """The axes a group spans when it is exactly the chips that differ only in those
        axes (each taken in full); None for any other group."""
        if not group:
            return None
        coords = [self.coord(r) for r in group]
        axes = [a for a in range(3) if min(c[a] for c in coords) != max(c[a] for c in coords)]
        if not axes or len(set(group)) != len(group):
            return None
        if len(group) != math.prod(self.shape[a] for a in axes):
            return None
        return axes

    def axis_lattice(self, group: Sequence[int]) -> list[tuple[int, int, int]] | None:
        """(axis, step, count) per spanned axis when the group is a regular sub-lattice:
        on each axis it takes every `step`-th chip all the way round (step * count = axis
        length), e.g. the data-parallel group of a layout whose tensor-parallel ranks are
        innermost along x. Whole axes are step 1. None for any other group."""
        if not group or len(set(group)) != len(group):
            return None
        coords = [self.coord(r) for r in group]
        spec = []
        for a in range(3):
            vals = sorted({c[a] for c in coords})
            if len(vals) == 1:
                continue
            step = vals[1] - vals[0]
            if any(y - x != step for x, y in zip(vals, vals[1:])) or step * len(vals) != self.shape[a]:
                return None
            spec.append((a, step, len(vals)))
        if not spec or len(group) != math.prod(n for _, _, n in spec):
            return None
        return spec

    def collective_algos(self, group: Sequence[int]) -> list[str]:
        """["torus"] when the group is a regular sub-lattice of the torus (whole axes, or
        every k-th chip along an axis)."""
        return ["torus"] if self.axis_lattice(group) else []


def build_torus(data: dict[str, Any], num_gpus: int, device_override: str = "", path: str = "topology") -> Torus:
    top = {k: v for k, v in data.items() if k != "ici"}
    spec = parse_dataclass(TorusSpec, top, "topology")
    if "ici" in data and not isinstance(data["ici"], dict):
        raise bad("ici", data["ici"], "expected a table", f"write [ici] followed by key = value lines in {path}")
    ici = parse_dataclass(ICISpec, data.get("ici", {}), "ici")
    for f, v in vars(ici).items():
        if v <= 0 and f != "latency_us" or v < 0:
            raise bad(f"ici.{f}", v, "must be positive", f"fix {path}")
    check_link_spec(ici, "ici", path)
    if spec.chips_per_host < 1:
        raise bad("chips_per_host", spec.chips_per_host, "must be positive", f"fix {path}")
    device = resolve_device(device_override, spec.device, path)
    for key in ("shape", "pod_shape"):
        v = getattr(spec, key)
        if v and (len(v) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)):
            raise bad(key, v, "expected three positive whole numbers", f"write e.g. {key} = [4, 4, 8] in {path}")
    if num_gpus < 1:
        raise bad("cluster.gpus", num_gpus, "need at least one chip", "set cluster.gpus or the parallel sizes")
    if spec.shape:
        shape = tuple(spec.shape)
        if math.prod(shape) < num_gpus:
            raise bad("shape", list(shape), f"has {math.prod(shape)} chips, fewer than the {num_gpus} asked for", f"enlarge shape in {path} or use fewer chips")
    else:
        found = slice_shape(num_gpus, spec.pod_shape)
        if found is None:
            p = "x".join(map(str, spec.pod_shape))
            raise SimtrainError(
                f"cluster.gpus = {num_gpus}: no x*y*z slice of {num_gpus} chips fits the {p} pod of {path}; "
                f"use a chip count that factors into the pod (e.g. {_nearby(num_gpus, spec.pod_shape)}) or set shape = [x, y, z]"
            )
        shape = found
    return Torus(spec, ici, shape, device)


def _nearby(n: int, pod: Sequence[int]) -> str:
    cands = [m for m in range(max(1, n // 2), min(2 * n, math.prod(pod)) + 1) if slice_shape(m, pod)]
    cands.sort(key=lambda m: abs(m - n))
    return " or ".join(str(m) for m in sorted(cands[:2])) or "64"

