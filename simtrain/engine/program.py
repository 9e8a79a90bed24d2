"""Actions as programs of compute and collectives, taken as one span where their links are idle.

A stage's forward or backward is, layer by layer, a fixed sequence of pieces: compute on
the main stream, and TP/CP collectives (some with compute running alongside). Run piece by
piece (`_piece`: `_compute` and `_overlapped`), every collective is one or more bundles on
the flow network and every piece a few simpy events. Where no other bundle uses the links
of the remaining collectives, only a newcomer could change their times: each takes its
idle-network time. The device then takes the rest of the action as one span, holding a
lease on those link classes (simtrain.network.lease): one event at its end, and its
records laid out with the floats the piece-by-piece run computes. When a bundle comes
onto the leased links meanwhile, the lease breaks at that moment: the collective in flight
goes on the network as the bundle it would be by then, the device is interrupted and goes
on piece by piece, taking a lease again as soon as its links are idle again. Same times as
piece by piece (the what-if and per-rank classes that meet at every collective, and traces
that log link rates, run piece by piece).
"""

from __future__ import annotations

from typing import Any

import simpy

from simtrain.engine.plan import StageWork
from simtrain.engine.primitives import Primitives, Proc
from simtrain.engine.spanrecords import SpanRecords
from simtrain.engine.smload import KIND as SM_KIND, coll_parts, contended_overlap
from simtrain.engine.timeline import Record

# a piece: (0, kind, seconds) compute, or
#          (1, dim, op, hidden seconds, hidden kind, phases, solo, record kind, record label, size,
#           share of SMs the hidden compute keeps beside the collective's NCCL blocks) collective
Piece = tuple


class Program:
    __slots__ = ("pieces", "cids", "generation", "timing", "charges", "rel", "total", "kinds", "charge_all")

    def __init__(self, pieces: tuple[Piece, ...]):
        self.pieces = pieces
        self.cids: frozenset[int] = frozenset()
        self.generation = -1  # the flow network's link classes the cids and timing belong to
        # per collective piece: ((latency, seconds on the links or None), ...) per phase, alone
        self.timing: list[tuple[tuple[float, float | None], ...] | None] = []
        # per collective piece: (phases, bytes, ((link class, bytes x multiplicity), ...)) charged when done
        self.charges: list[tuple[int, float, tuple[tuple[int, float], ...]] | None] = []
        # the whole program alone from time 0: (start, end, phase ends) per piece, its length,
        # its seconds by record kind ((kind, collective label or None, seconds), first seen
        # first) and its charges all together
        self.rel: list[tuple[float, float, Any, float]] = []
        self.total = 0.0
        self.kinds: tuple[tuple[str, str | None, float], ...] = ()
        self.charge_all: tuple[int, float, tuple[tuple[int, float], ...]] = (0, 0.0, ())


class Programs(SpanRecords, Primitives):
    """Building and running action programs (see the module docstring)."""

    leases = True  # False: every action piece by piece (tests compare the two)
    lease_breaks = 0  # spans broken by a newcomer on their links (tests)

    def _programs_on(self) -> bool:
        return self.leases and not (self.varied or self.free or self.net.rate_log is not None)

    # ---- building -----------------------------------------------------------------------
    def _cp_pieces(self, st: StageWork, seg: float, attn: float, op: str, kind: str) -> list[tuple]:
        """`_cp`'s pieces: the K/V exchange exposed before (all-gather) or after the segment,
        or as a ring behind its attention."""
        size = st.layer.cp_bytes
        if self.cp_ring:
            return [("c", kind, seg - attn), ("x", "cp", op, size, attn, kind)]
        if op == "all-gather":
            return [("x", "cp", op, size, 0.0, kind), ("c", kind, seg)]
        return [("c", kind, seg), ("x", "cp", op, size, 0.0, kind)]

    def _forward_program(self, dev: int, st: StageWork, kind: str) -> Program | None:
        key = ("F", dev, st.index, kind)
        if key not in self._programs:
            lc = st.layer
            tp = 0.0 if self.overlap_tp else lc.tp_bytes
            pre = st.embed.fwd if (st.embed and kind == "F") else 0.0
            post = st.head.fwd if (st.head and kind == "F") else 0.0
            first = self._cp_pieces(st, lc.fwd[0], lc.attn_fwd, "all-gather", kind) if lc.cp_bytes > 0 else [("c", kind, lc.fwd[0])]
            layer = first + [("x", "tp", "all-reduce", tp, 0.0, "B"), ("c", kind, lc.fwd[1]), ("x", "tp", "all-reduce", tp, 0.0, "B")]
            self._programs[key] = self._compile_program(dev, [("c", kind, pre), *layer * st.layers, ("c", kind, post)])
        return self._programs[key]

    def _backward_program(self, dev: int, st: StageWork, with_weight: bool) -> Program | None:
        key = ("B", dev, st.index, with_weight)
        if key not in self._programs:
            lc = st.layer
            tp = 0.0 if self.overlap_tp else lc.tp_bytes
            blocks = self._block_wgrads(lc, with_weight)  # (MLP block, then attention)
            layer: list[tuple] = []
            for i, seg in enumerate((lc.bwd_input[1], lc.bwd_input[0])):
                ser, hid = blocks[i]
                if self.sp:
                    layer.append(("x", "tp", "all-gather", tp, 0.0, "B"))
                if i == 1 and lc.cp_bytes > 0:
                    layer += self._cp_pieces(st, seg, lc.attn_bwd, "reduce-scatter", "B")
                    layer.append(("c", "B", ser))
                else:
                    layer.append(("c", "B", seg + ser))
                layer.append(("x", "tp", "reduce-scatter" if self.sp else "all-reduce", tp, hid, "B"))
            raw = [("c", "B", st.head.bwd_input + (st.head.bwd_weight if with_weight else 0.0))] if st.head else []
            raw += layer * st.layers
            if st.embed:
                raw.append(("c", "B", st.embed.bwd_weight if with_weight else 0.0))
            self._programs[key] = self._compile_program(dev, raw)
        return self._programs[key]

    def _compile_program(self, dev: int, raw: list[tuple]) -> Program | None:
        """Pieces as the piece-by-piece run would take them (empty ones dropped, collectives
        without a peer as their compute); None when a collective needs a rendezvous. A
        layer's raw pieces repeat (the same objects, layer after layer): each is compiled
        once, and its repeats are the same piece object (`_link_classes` counts on it)."""
        out: list[Piece] = []
        made: dict[int, Piece | None] = {}  # id(raw collective) -> its piece (None: dropped)
        for p in raw:
            if p[0] == "c":
                if p[2] > 0:
                    out.append((0, p[1], p[2]))
                continue
            if id(p) in made:
                piece = made[id(p)]
            else:
                _, dim, op, size, hidden, hkind = p
                v = self._view(dim, dev)
                if size <= 0 or len(v.group) == 1:
                    piece = (0, hkind, hidden) if hidden > 0 else None
                else:
                    if len(v.reps) > 1:
                        return None
                    phases, solo = self._coll_phases(dev, dim, op, size)
                    # the share of SMs the hidden compute keeps beside a TP collective's NCCL blocks
                    rate = self._tp_rate(dev) if dim == "tp" and hidden > 0 else 1.0
                    piece = (1, dim, op, hidden, hkind, tuple(phases), solo, "cp" if dim == "cp" else "tp", f"{op}({dim})",
                             size, rate)
                made[id(p)] = piece
            if piece is not None:
                out.append(piece)
        return Program(tuple(out))

    def _link_classes(self, prog: Program) -> frozenset[int]:
        """The link classes of the program's collectives that share links with others, and
        (in `prog`) each phase's time alone and link charges: recomputed when the flow
        network recompiles its classes."""
        net = self.net
        if prog.generation != net.generation:
            for p in prog.pieces:  # (compiles the classes first if they are out of date: one ask does)
                if p[0] == 1 and p[5]:
                    net.phase_classes(p[5][0].key)
                    break
            cids: set[int] = set()
            prog.timing, prog.charges = [], []
            done: dict[int, tuple] = {}  # id(piece) -> (timing, charges, its cids): repeats are one object
            for p in prog.pieces:
                if p[0] == 0:
                    prog.timing.append(None)
                    prog.charges.append(None)
                    continue
                hit = done.get(id(p))
                if hit is None:
                    timing, nbytes, busy, mine = [], 0.0, [], []  # (mine: in the order a set would take them)
                    for ph in p[5]:
                        classes = net.phase_classes(ph.key)
                        on_links = ph.nbytes > 0 and bool(classes)
                        timing.append((ph.latency, ph.nbytes / net.rate_alone(ph.key, classes) if on_links else None))
                        if on_links:
                            nbytes += ph.nbytes
                            busy += [(cid, ph.nbytes * m) for cid, m in classes]
                        if not p[6]:
                            mine += [cid for cid, _ in classes]
                    hit = done[id(p)] = (tuple(timing), (len(p[5]), nbytes, tuple(busy)), mine)
                prog.timing.append(hit[0])
                prog.charges.append(hit[1])
                cids.update(hit[2])
            prog.cids = frozenset(cids)
            prog.generation = net.generation
            self._whole(prog)
        return prog.cids

    def _whole(self, prog: Program) -> None:
        """The program's timing from time 0, its seconds by kind and its charges together."""
        prog.rel = self._span(prog, 0, 0.0) if prog.pieces else []
        prog.total = prog.rel[-1][1] if prog.rel else 0.0
        kinds: dict[str, list] = {}
        count, nbytes, busy = 0, 0.0, {}
        for p, (t0, e, ends, t1), ch in zip(prog.pieces, prog.rel, prog.charges):
            if p[0] == 0:
                parts = [(p[1], None, e - t0)]
            else:
                parts = [(kind, lab, b - a) for kind, lab, a, b in coll_parts(p, t0, e, ends, t1)]
                count, nbytes = count + ch[0], nbytes + ch[1]
                for cid, amount in ch[2]:
                    busy[cid] = busy.get(cid, 0.0) + amount
            for kind, lab, d in parts:
                if d > 0:
                    hit = kinds.get(kind)
                    if hit is None:
                        kinds[kind] = [lab, d]
                    else:
                        hit[1] += d
        prog.kinds = tuple((k, lab, d) for k, (lab, d) in kinds.items())
        prog.charge_all = (count, nbytes, tuple(busy.items()))

    def _rel_span(self, prog: Program, t: float, until: float | None = None) -> list[tuple[float, float, Any, float]]:
        """The whole program's timing from time t (its timing from 0, shifted); with
        `until`, only up to the first piece that ends after it."""
        if until is None:
            return [(t + a, t + b, None if ends is None else [t + x for x in ends], t + h) for a, b, ends, h in prog.rel]
        out = []
        for a, b, ends, h in prog.rel:
            out.append((t + a, t + b, None if ends is None else [t + x for x in ends], t + h))
            if t + b > until:
                break
        return out

    # ---- running ------------------------------------------------------------------------
    def _run_program(self, dev: int, prog: Program, label: str, stage: int, mb: int) -> Proc:
        pieces, net, env = prog.pieces, self.net, self.env
        n, i = len(pieces), 0
        while i < n:
            cids = prog.cids if prog.generation == net.generation else self._link_classes(prog)
            if not net.idle(cids):
                yield from self._piece(dev, pieces[i], label, stage, mb)
                i += 1
                continue
            t = env.now
            span = None if i == 0 else self._span(prog, i, t)  # from the start: its timing from 0, shifted
            end = t + prog.total if span is None else span[-1][1]
            lease = None
            if cids:
                ctx = (prog, i, t, span, env.active_process)
                lease = net.lease(cids, lambda ctx=ctx: self._break_span(*ctx))
            try:
                yield net._at(end, None)
            except simpy.Interrupt as irq:
                j, coll, span = irq.cause
                self._span_done(dev, prog, i, j, span, label, stage, mb)
                yield from self._resume_piece(dev, pieces[j], span[j - i], coll, label, stage, mb)
                i = j + 1
                continue
            if lease is not None:
                net.release(lease)
            if span is None and self.coarse:
                self._whole_done(dev, prog, t, end, label, stage, mb)
            else:
                self._span_done(dev, prog, i, n, span or self._rel_span(prog, t), label, stage, mb)
            return

    def _piece(self, dev: int, p: Piece, label: str, stage: int, mb: int) -> Proc:
        if p[0] == 0:
            yield from self._compute(dev, p[2], p[1], label, stage, mb)
        else:
            yield from self._overlapped(dev, p[1], p[2], p[9], p[3], label, stage, mb, p[4])

    def _span(self, prog: Program, i: int, t: float) -> list[tuple[float, float, Any, float]]:
        """(start, end, phase ends, end of the compute alongside) of pieces i.. run alone
        from time t: the floats of the piece-by-piece run (a timeout is now + seconds; a
        phase as FlowNetwork.phase_end)."""
        pieces, timing = prog.pieces, prog.timing
        out: list[tuple[float, float, Any, float]] = []
        for k in range(i, len(pieces)):
            p = pieces[k]
            if p[0] == 0:
                e = t + p[2]
                out.append((t, e, None, t))
            else:
                tc, ends = t, []
                for lat, dur in timing[k]:
                    if lat > 0:
                        tc = tc + lat
                    if dur is not None:
                        tc = tc + dur
                    ends.append(tc)
                h = p[3]
                if h > 0 and p[10] < 1.0:  # the compute slowed beside the collective (smload)
                    th = t + h
                    e = contended_overlap(t, h, tc, p[10])[1]
                elif h > 0:
                    th = t + h
                    e = th if tc <= th else tc
                else:
                    e, th = tc, t
                out.append((t, e, ends, th))
            t = e
        return out

    def _break_span(self, prog: Program, i: int, t: float, span: list | None, proc: simpy.Process) -> None:
        """A bundle comes onto the span's links now: put the collective in flight on the
        network and interrupt the device with (piece in progress, its collective's event,
        the span's timing)."""
        now, pieces = self.env.now, prog.pieces
        if span is None:
            if t + prog.total <= now:  # everything ends by now: the span's own event finishes it
                return
            span = self._rel_span(prog, t, until=now)  # (up to the piece in progress: all a break reads)
        j = next((k for k in range(i, len(pieces)) if span[k - i][1] > now), None)
        if j is None:
            return
        self.lease_breaks += 1
        p = pieces[j]
        coll = self._coll_in_flight(p, span[j - i], now) if p[0] == 1 else None
        proc.interrupt((j, coll, span))

    def _coll_in_flight(self, p: Piece, timing: tuple[float, float, Any, float], now: float) -> simpy.Event | None:
        """The event of piece p's collective (started alone at timing[0]) as the flow network
        runs it from now: its finished phases charged, the one in flight a bundle, the rest
        sent after it; None when it is over."""
        net = self.net
        t, _, ends, _ = timing
        phases = p[5]
        if p[6]:  # on links of its own: run_alone charged it at the start, one event at its end
            for ph in phases:
                net.charge(ph.key, ph.nbytes)
            return net._at(ends[-1], None) if ends[-1] > now else None
        for k, ph in enumerate(phases):
            if ends[k] <= now:
                net.charge(ph.key, ph.nbytes)
                t = ends[k]
                continue
            done = self.env.event()
            rest = phases[k + 1:]
            then = (lambda: self._chain(rest, done.succeed)) if rest else done.succeed
            net.materialize(ph.key, ph.nbytes, ph.latency, t, then)
            return done
        return None

    def _resume_piece(self, dev: int, p: Piece, timing: tuple[float, float, Any, float], coll: simpy.Event | None,
                      label: str, stage: int, mb: int) -> Proc:
        """Finish piece p (started at timing[0]) after a break, as `_piece` would have."""
        env, net = self.env, self.net
        t0, e, _, t1 = timing
        if p[0] == 0:
            if e > env.now:
                yield net._at(e, None)
            self._rec(dev, p[1], label, t0, stage, mb)
            return
        ended: list[float] = []
        if p[10] < 1.0 and p[3] > 0:  # (the collective's end, for the compute its blocks slow)
            if coll is None or coll.processed:
                ended.append(timing[2][-1] if coll is None else env.now)
            else:
                coll.callbacks.append(lambda _e: ended.append(env.now))
        if t1 > t0:  # compute alongside the collective, until t1
            if t1 > env.now:
                yield net._at(t1, None)
            self.records.append(Record(dev, "main", p[4], label, t0, t1, stage, mb))
        if coll is not None and not coll.processed:
            yield coll
        if ended:  # as `_contended` lays it out
            ce, end = contended_overlap(t0, p[3], ended[0], p[10])
            if end > env.now:
                yield net._at(end, None)
            if ce > t1:
                self.records.append(Record(dev, "main", SM_KIND, label, t1, ce, stage, mb))
            if end > ce:
                self.records.append(Record(dev, "main", p[7], p[8], ce, end, stage, mb))
            return
        if env.now > t1:
            self.records.append(Record(dev, "main", p[7], p[8], t1, env.now, stage, mb))

