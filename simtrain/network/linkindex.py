"""Routes of many flows at once, over a table of links: what the what-if classes and
per-rank mode need for every process group and transfer of a large cluster.

`LinkIndex(topo).routes(src, dst)` returns (flow, link, fraction) arrays with the same
routes and fractions as `topo.route_load` flow by flow; links are dense indices into a
table (`link(i)` names one, `capacity`/`latency` give its attributes). Fat trees (also
under what-ifs: thinner links keep their routes, flows that would cross a failed link are
rerouted by the what-if topology) are routed with numpy (simtrain.hardware.fat_tree_vec);
any other topology flow by flow.
"""

from __future__ import annotations

import numpy as np

from simtrain.hardware import fat_tree_vec as vec
from simtrain.hardware.fat_tree import FatTree
from simtrain.hardware.topology import Link, Topology


class LinkIndex:
    def __init__(self, topo: Topology):
        self.topo = topo
        base = getattr(topo, "base", None)  # a what-if topology (simtrain.engine.whatif.Degraded)
        self.tree = topo if isinstance(topo, FatTree) else (base if isinstance(base, FatTree) else None)
        self.degraded = self.tree is not None and self.tree is not topo
        self._index: dict = {}  # raw id (fat tree) or link -> dense index
        self._links: list[Link] = []
        self._cap: list[float] = []
        self._lat: list[float] = []
        if self.degraded:
            self._failed = {vec.encode(self.tree, l) for l in topo.failed}

    # --- table ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._links)

    def link(self, i: int) -> Link:
        return self._links[i]

    @property
    def links(self) -> list[Link]:
        """The table: link index -> link."""
        return self._links

    @property
    def capacity(self) -> np.ndarray:
        return np.asarray(self._cap)

    @property
    def latency(self) -> np.ndarray:
        return np.asarray(self._lat)

    def _add(self, key, link: Link) -> int:
        i = self._index[key] = len(self._links)
        self._links.append(link)
        info = self.topo.link(link)
        self._cap.append(info.capacity)
        self._lat.append(info.latency)
        return i

    def _dense(self, keys: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(keys, return_inverse=True)
        idx, get = self._index, self._index.get
        dense = np.fromiter(((get(k) if k in idx else self._add(k, vec.decode(self.tree, k))) for k in uniq.tolist()),
                            dtype=np.int64, count=len(uniq))
        return dense[inv.reshape(-1)]

    # --- routes ---------------------------------------------------------------------
    def routes(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flow index, link index, fraction) over every link of every flow's route."""
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        if self.tree is None:
            return self._python(np.arange(len(src)), src, dst)
        flow, ids, frac = vec.routes(self.tree, src, dst, detailed=self.topo.detail if self.degraded else False)
        if self.degraded and self._failed:
            hit = np.isin(ids, np.fromiter(self._failed, dtype=np.int64))
            if hit.any():
                bad = np.unique(flow[hit])
                keep = ~np.isin(flow, bad)
                f2, l2, x2 = self._python(bad, src[bad], dst[bad])
                return (np.concatenate([flow[keep], f2]), np.concatenate([self._dense(ids[keep]), l2]),
                        np.concatenate([frac[keep], x2]))
        return flow, self._dense(ids), frac

    def _python(self, flows: np.ndarray, src: np.ndarray, dst: np.ndarray):
        out_f, out_l, out_x = [], [], []
        idx = self._index
        key = (lambda l: vec.encode(self.tree, l)) if self.tree is not None else (lambda l: l)
        for f, s, d in zip(flows.tolist(), src.tolist(), dst.tolist()):
            for link, x in self.topo.route_load(s, d):
                k = key(link)
                i = idx.get(k)
                if i is None:
                    i = self._add(k, link)
                out_f.append(f)
                out_l.append(i)
                out_x.append(x)
        return np.asarray(out_f, dtype=np.int64), np.asarray(out_l, dtype=np.int64), np.asarray(out_x, dtype=np.float64)

    def route_latency(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """`topo.route_latency` for every flow."""
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        if self.tree is None:
            lat = self.topo.route_latency
            return np.fromiter((lat(s, d) for s, d in zip(src.tolist(), dst.tolist())), dtype=np.float64, count=len(src))
        out = vec.latency(self.tree, src, dst)
        if self.degraded and self._failed:  # the what-if topology's path may go round a failed link
            lat = self.topo.route_latency
            for i in np.flatnonzero(self._may_detour(src, dst)).tolist():
                out[i] = lat(int(src[i]), int(dst[i]))
        return out

    def _may_detour(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flows whose single (hashed) path crosses a failed link."""
        flow, ids, _ = vec.routes(self.tree, src, dst, ecmp=True)
        mask = np.zeros(len(src), dtype=bool)
        mask[flow[np.isin(ids, np.fromiter(self._failed, dtype=np.int64))]] = True
        return mask
