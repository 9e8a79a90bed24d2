"""Records and link charges of an action program taken as one span (simtrain.engine.program):
the whole program (`_whole_done`) or pieces i..j-1 of it (`_span_done`), with the floats
the piece-by-piece run computes; in coarse detail one record per kind, as
`Primitives._segments` lays them out."""

from __future__ import annotations

from typing import Any

from simtrain.engine.smload import coll_parts
from simtrain.engine.timeline import Record


class SpanRecords:
    """Mixed into `Programs` (which sets net, records and coarse)."""

    net: Any
    records: list[Record]
    coarse: bool

    def _whole_done(self, dev: int, prog: Any, t: float, end: float, label: str, stage: int, mb: int) -> None:
        """Coarse records of the whole program run alone from t to end (one per kind, laid
        out in the order the kinds first appear, the last one ending with the span), charged."""
        net = self.net
        count, nbytes, busy = prog.charge_all
        net.transfers += count
        net.bytes_moved += nbytes
        link_busy = net.link_busy
        for cid, amount in busy:
            link_busy[cid] += amount
        recs, last = self.records, len(prog.kinds) - 1
        for n, (kind, lab, d) in enumerate(prog.kinds):
            e = end if n == last else t + d
            recs.append(Record(dev, "main", kind, lab or label, t, e, stage, mb))
            t = e

    def _span_done(self, dev: int, prog: Any, i: int, j: int, span: list, label: str, stage: int, mb: int) -> None:
        """Records of pieces i..j-1 of a span (all done; in coarse detail one per kind, as
        `_segments` lays them out), their collectives charged to the links."""
        if not self.coarse:
            self._span_records(dev, prog, i, j, span, label, stage, mb)
            return
        pieces, net, charges_of = prog.pieces, self.net, prog.charges
        busy = net.link_busy
        # (kind -> [label, seconds]) summed in record order, as `_span_records` would lay out
        # (each part added inline: first start, last end and count kept as it goes)
        sums: dict[str, list] = {}
        get = sums.get
        first = last = None
        n = 0
        for k in range(i, j):
            p = pieces[k]
            t0, e, _, t1 = span[k - i]
            if p[0] == 0:
                if e > t0:
                    hit = get(p[1])
                    if hit is None:
                        sums[p[1]] = [label, e - t0]
                    else:
                        hit[1] += e - t0
                    if first is None:
                        first = t0
                    last, n = e, n + 1
                continue
            count, nbytes, charges = charges_of[k]
            net.transfers += count
            net.bytes_moved += nbytes
            for cid, amount in charges:
                busy[cid] += amount
            if p[10] < 1.0:  # the compute its NCCL blocks slowed as well (program.coll_parts)
                for kind, lab, a, b in coll_parts(p, t0, e, span[k - i][2], t1):
                    hit = get(kind)
                    if hit is None:
                        sums[kind] = [lab or label, b - a]
                    else:
                        hit[1] += b - a
                    if first is None:
                        first = a
                    last, n = b, n + 1
                continue
            if t1 > t0:
                hit = get(p[4])
                if hit is None:
                    sums[p[4]] = [label, t1 - t0]
                else:
                    hit[1] += t1 - t0
                if first is None:
                    first = t0
                last, n = t1, n + 1
            if e > t1:
                hit = get(p[7])
                if hit is None:
                    sums[p[7]] = [p[8], e - t1]
                else:
                    hit[1] += e - t1
                if first is None:
                    first = t1
                last, n = e, n + 1
        recs = self.records
        if n < 2:
            if n == 1:
                ((kind, (lab, _)),) = sums.items()
                recs.append(Record(dev, "main", kind, lab, first, last, stage, mb))
            return
        t = first
        for m, (kind, (lab, d)) in enumerate(sums.items(), 1):
            e = last if m == len(sums) else t + d
            recs.append(Record(dev, "main", kind, lab, t, e, stage, mb))
            t = e

    def _span_records(self, dev: int, prog: Any, i: int, j: int, span: list, label: str, stage: int, mb: int) -> None:
        """`_span_done` piece by piece (every record; coarse detail merges them per kind)."""
        pieces, net = prog.pieces, self.net
        parts: list[tuple[str, str, float, float]] = []  # (kind, label, start, end)
        busy = net.link_busy
        for k in range(i, j):
            p = pieces[k]
            t0, e, _, t1 = span[k - i]
            if p[0] == 0:
                if e > t0:
                    parts.append((p[1], label, t0, e))
                continue
            count, nbytes, charges = prog.charges[k]
            net.transfers += count
            net.bytes_moved += nbytes
            for cid, amount in charges:
                busy[cid] += amount
            for kind, lab, a, b in coll_parts(p, t0, e, span[k - i][2], t1):
                parts.append((kind, lab or label, a, b))
        recs = self.records
        if not self.coarse or len(parts) < 2:
            recs.extend(Record(dev, "main", kind, lab, a, b, stage, mb) for kind, lab, a, b in parts)
            return
        sums: dict[str, list] = {}
        for kind, lab, a, b in parts:
            hit = sums.get(kind)
            if hit is None:
                sums[kind] = [lab, b - a]
            else:
                hit[1] += b - a
        t, last = parts[0][2], parts[-1][3]
        for n, (kind, (lab, d)) in enumerate(sums.items(), 1):
            e = last if n == len(sums) else t + d
            recs.append(Record(dev, "main", kind, lab, t, e, stage, mb))
            t = e
