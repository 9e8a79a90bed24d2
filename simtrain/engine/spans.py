"""Coalesced main-stream spans: a stretch of compute and TP collectives on idle links
taken as one timeout, with its records laid out arithmetically (`_segments`), the TP
group's rendezvous before one (`_tp_sync`), and the TP group's span taken once for all
its members (`_group_segments`): in per-rank mode the eight members of a group would
otherwise meet on one event and then each wait out the same seconds on a timeout of its
own (nine events and fifteen resumptions per action); here they all wait on one event,
which the last to arrive schedules for the span's end (one event, eight resumptions). Each member keeps
its own records, the same floats. Part of the engine's primitives."""

from __future__ import annotations

from typing import Generator, Hashable

import simpy
from simpy.events import NORMAL

from simtrain.engine.plan import StageWork
from simtrain.engine.smload import KIND as SM_KIND, contended_overlap
from simtrain.engine.timeline import Record, record

_new = tuple.__new__

Proc = Generator[simpy.Event, object, None]
Packed = tuple[tuple[tuple[str, float], ...], float]


class Spans:
    """Mixed into `Primitives`, which sets env, records, coarse, varied, rdv, waited_on,
    last_arrival and provides _scale, _view, _arrive and _rec."""

    env: simpy.Environment
    records: list[Record]
    coarse: bool
    varied: bool
    rdv: dict[Hashable, list]
    waited_on: dict[int, dict[float, tuple[int, float]]]  # (a defaultdict)
    last_arrival: dict[Hashable, int]
    _tp_views: dict[int, object]  # device -> its TP group view (_view("tp", dev), looked up once)

    def _segments(self, dev: int, packed: Packed, label: str, stage: int, mb: int) -> Proc:
        """Run consecutive main-stream segments (from `_pack`) as one timeout; record each."""
        segs, total = packed
        if self.varied:
            segs = tuple((k, d if k == "tp" else self._scale(dev, d, k, stage, mb)) for k, d in segs)
            total = sum(d for _, d in segs)
        if total <= 0:
            return
        t = self.env._now
        yield self.env.timeout(total)
        self._lay_out(dev, segs, t, label, stage, mb)

    def _lay_out(self, dev: int, segs: tuple[tuple[str, float], ...], t: float, label: str, stage: int, mb: int) -> None:
        """Records of segments run from t to now."""
        add = self.records.append
        end, last = self.env._now, len(segs) - 1
        for n, (kind, d) in enumerate(segs):
            if d > 0:
                e = end if (n == last and self.coarse) else t + d  # coarse: the last record ends with the span
                # (record(...) inlined: the same tuple)
                add(_new(Record, (dev, "main", kind, "all-reduce(tp)" if kind == "tp" else label, t, e, stage, mb, 0.0)))
                t += d

    def _tp_sync(self, dev: int, what: Hashable, cause: bool = True) -> Proc:
        """The members of a TP group (the representatives of their classes) start a
        coalesced action together. `cause=False`: the wait is not noted as caused by the
        last member (critical path), as for the first TP collective of an action run
        piece by piece, which this sync stands for."""
        v = self._view("tp", dev)
        if len(v.reps) == 1:
            return
        k = ("sync", v.key, what)
        ev, last = self._arrive(k, len(v.reps))
        if last:
            self.last_arrival[k] = dev
            ev.succeed()
        if not ev.processed:
            t0 = self.env._now
            yield ev
            if cause:
                self.waited_on[dev][self.env._now] = (self.last_arrival[k], self.env._now)
            self._rec(dev, "tp", "wait tp peers", t0)

    def _group_segments(self, dev: int, what: Hashable, packed: Packed, label: str, stage: int, mb: int) -> Proc:
        """`_tp_sync` then `_segments`, as one event for the whole group: the members wait
        on one event, which the last to arrive schedules for the span's end. Same floats
        (now + seconds, as a timeout), same waits noted and recorded, and the members
        resume in the order `_tp_sync` then their timeouts would wake them (those that
        waited in arrival order, then the last)."""
        v = self._tp_views.get(dev)
        if v is None:
            v = self._tp_views[dev] = self._view("tp", dev)
        segs, total = packed
        if len(v.reps) == 1 or self.varied or total <= 0:  # (scaled spans: each member its own)
            yield from self._tp_sync(dev, what)
            yield from self._segments(dev, packed, label, stage, mb)
            return
        entry = self._span_join(dev, v, what, total)
        t0 = self.env._now
        yield entry[1]
        self._span_left(dev, entry, t0, segs, label, stage, mb)

    def _span_join(self, dev: int, v, what: Hashable, total: float) -> list:
        """`_group_segments` up to its wait: `dev` joins its group's span (`v`: its TP view);
        the last to arrive schedules the span's end. The entry the members share."""
        k = ("sync", v.key, what)
        entry = self.rdv.get(k)
        if entry is None:
            # arrivals, the span's end, its start, the last to arrive (kept here, not in
            # last_arrival: the members read it from the entry they share), (last, start)
            entry = self.rdv[k] = [0, self.env.event(), 0.0, dev, None]
        entry[0] += 1
        if entry[0] == len(v.reps):
            del self.rdv[k]
            entry[3] = dev
            entry[2] = now = self.env._now
            entry[4] = (dev, now)  # (the wait's cause, one tuple for the members to note)
            end = entry[1]
            end._ok, end._value = True, None  # (what a timeout is: an event scheduled `total` ahead)
            self.env.schedule(end, NORMAL, total)
        return entry

    def _span_left(self, dev: int, entry: list, t0: float, segs: tuple, label: str, stage: int, mb: int) -> None:
        """`_group_segments` after its wait (from `t0`): the wait noted and recorded, the
        span's segments laid out."""
        start = entry[2]
        self.waited_on[dev][start] = entry[4]  # (as _tp_sync notes it: (the last to arrive, start))
        if start > t0:
            self.records.append(record(dev, "main", "tp", "wait tp peers", t0, start, stage, mb))
        self._lay_out(dev, segs, start, label, stage, mb)

    def _forward_segs(self, st: StageWork, kind: str, tpt: float) -> tuple:
        """A forward's (or recomputation's) segments where its TP collectives take `tpt` each."""
        key = ("F", st.index, kind, tpt)
        segs = self._seg_cache.get(key)
        if segs is None:
            lc = st.layer
            pre = st.embed.fwd if (st.embed and kind == "F") else 0.0
            post = st.head.fwd if (st.head and kind == "F") else 0.0
            one = ((kind, lc.fwd[0]), ("tp", tpt), (kind, lc.fwd[1]), ("tp", tpt))
            segs = self._seg_cache[key] = self._pack([(kind, pre), *one * st.layers, (kind, post)])
        return segs

    def _backward_segs(self, dev: int, st: StageWork, tpt: float, with_weight: bool, by_layer: bool) -> tuple:
        """A backward's segments (one layer's with `by_layer`) where its TP collectives take
        `tpt` each, with the weight gradient unless it is split off (`with_weight`)."""
        lc = st.layer
        # each block's input-gradient TP collective runs beside the weight gradient of the
        # block's first linear (LayerCost.wgrad_parts); the block's other weight gradients
        # run before it
        (s0, b0), (s1, b1) = lc.wgrad_parts() if with_weight else ((0.0, 0.0), (0.0, 0.0))
        rate = self._tp_rate(dev) if self.async_tp and (b0 > 0 or b1 > 0) and tpt > 0 else 1.0
        key = ("B", st.index, tpt, with_weight, by_layer, rate)
        segs = self._seg_cache.get(key)
        if segs is None:
            if self.sp and tpt > 0:
                ag, rs = self.tp_split[dev]
                # row-parallel output-gradient all-gather first (exposed), the block's
                # GEMMs, then the input-gradient reduce-scatter beside the weight gradient
                one = [("tp", ag), ("B", lc.bwd_input[1] + s1), *self._beside(b1, rs, rate),
                       ("tp", ag), ("B", lc.bwd_input[0] + s0), *self._beside(b0, rs, rate)]
            else:
                one = ([("B", lc.bwd_input[1] + s1)] + self._beside(b1, tpt, rate)
                       + [("B", lc.bwd_input[0] + s0)] + self._beside(b0, tpt, rate))
            segs = self._seg_cache[key] = self._pack(one if by_layer else one * st.layers)
        return segs

    def _block_wgrads(self, lc, with_weight: bool) -> list[tuple[float, float]]:
        """(serial, beside) weight-gradient seconds of the MLP block, then the attention block
        (a backward's order; LayerCost.wgrad_parts); all serial without async TP."""
        if not with_weight:
            return [(0.0, 0.0), (0.0, 0.0)]
        attn, mlp = lc.wgrad_parts()
        return [p if self.async_tp else (p[0] + p[1], 0.0) for p in (mlp, attn)]

    def _beside(self, wg: float, coll: float, rate: float) -> list[tuple[str, float]]:
        """Segments of `wg` seconds of weight gradient beside a TP collective of `coll`
        seconds (async TP): the collective's exposed rest; with NCCL's blocks leaving the
        GEMMs `rate` of the SMs, also what they cost them (nccl_sm, simtrain.engine.smload)."""
        if not self.async_tp:
            return [("B", wg), ("tp", coll)]
        if rate >= 1.0:
            return [("B", wg), ("tp", max(0.0, coll - wg))]
        ce, end = contended_overlap(0.0, wg, coll, rate)
        return [("B", wg), (SM_KIND, ce - wg), ("tp", end - ce)]
