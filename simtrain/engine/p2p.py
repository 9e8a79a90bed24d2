"""Point-to-point transfers between pipeline neighbours: the send on the flow network, the
arrival event, the receiver's wait and the records it leaves. Part of the engine's
primitives (simtrain.engine.primitives), which it extends; `Engine.__init__` sets up the
state (`arrivals`: key -> its arrival event; `sent_from`: key -> (when its send started,
the sender), for the bubble/pp split of a wait and the critical path)."""

from __future__ import annotations

from typing import Generator, Hashable

import simpy

from simtrain.engine.timeline import Record

Proc = Generator[simpy.Event, object, None]
_new = tuple.__new__  # (Record(...) without its generated __new__: simtrain.engine.timeline.record)
_Event = simpy.Event


class PointToPoint:
    def _neighbour(self, dev: int, stage: int) -> tuple[int, int]:
        """(the device running `stage` for `dev`'s replica, its class's representative)."""
        key = (dev, stage)
        hit = self._neighbours.get(key)
        if hit is None:
            peer = self._peer_rank(dev, stage)
            hit = self._neighbours[key] = (peer, self.classes.rep_of(peer))
        return hit

    def _send(self, dev: int, dst: int, key: Hashable, stage: int, mb: int, kind: str) -> None:
        # (one per device and action in per-rank runs: _event and the one-phase _chain inlined)
        env = self.env
        t0 = env._now
        self.sent_from[key] = (t0, dev)
        arrivals = self.arrivals
        ev = arrivals.get(key)
        if ev is None:
            ev = arrivals[key] = _Event(env)
        if self.free:
            ev.succeed()
            return
        pkey = ("p2p", dev, dst)
        phases = self._phases.get(pkey)
        if phases is None:
            phases = self._phases[pkey] = self.comm.p2p(dev, dst, self.plan.p2p_bytes, self.classes.p2p_copies(dev, dst))
        records, arrived, nbytes = self.records, self.arrived, self.plan.p2p_bytes
        label = self._send_labels.get((kind, mb))
        if label is None:  # (one string per label, shared by every device's records)
            label = self._send_labels[(kind, mb)] = f"send {kind}{mb}"

        def sent() -> None:
            end = env._now
            if end > t0:
                records.append(_new(Record, (dev, "comm", "pp", label, t0, end, stage, mb, nbytes)))
            arrived.succeed(ev)  # (ev.succeed(), a TP group's arrivals in one entry: engine.loop)

        if len(phases) == 1:
            ph = phases[0]
            self.net.transfer(ph.key, ph.nbytes, ph.latency, sent)
        else:
            self._chain(phases, sent)

    def _send_blocking(self, dev: int, dst: int, key: Hashable, stage: int, mb: int, kind: str) -> Proc:
        """Send; with synchronous point-to-point (SC21-era Megatron waited for its sends
        before the next compute) the sender's stream waits for the transfer."""
        self._send(dev, dst, key, stage, mb, kind)
        if not self.async_p2p:
            ev = self._event(key)
            if not ev.processed:
                t0 = self.env._now
                yield ev
                self._rec(dev, "pp", f"send {kind}{mb}", t0, stage, mb)

    def _wait(self, dev: int, key: Hashable, stage: int, mb: int, what: str, ev: simpy.Event | None = None) -> Proc:
        """Wait for the arrival `key` (its event `ev` when the caller has it)."""
        if ev is None:
            ev = self._event(key)
        if ev.callbacks is None:  # (processed)
            self._received(key)
            return
        t0 = self.env._now
        yield ev
        self._arrived(dev, key, stage, mb, what, t0)

    def _arrived(self, dev: int, key: Hashable, stage: int, mb: int, what: str, t0: float) -> None:
        """Arrival `key` came now, after `dev` waited for it from `t0` (`_wait`'s end; the
        device process yields the event itself, without a generator of its own): its
        event and notes go, the wait is recorded (bubble before the send started, pp after)
        and noted as caused by the sender."""
        t1 = self.env._now
        self.arrivals.pop(key, None)
        info = self.sent_from.pop(key, None)
        ss = t1 if info is None else info[0]
        split = min(max(ss, t0), t1)
        if info is not None:  # the wait ends because this device sent at `ss`
            self.waited_on[dev][t1] = (info[1], ss)
        labels = self._wait_labels.get(what)
        if labels is None:  # (one string per label, shared by every device's records: less to build and keep)
            labels = self._wait_labels[what] = (f"wait {what}", f"recv {what}")
        if split > t0:  # (record(...) inlined: the same tuples)
            self.records.append(_new(Record, (dev, "main", "bubble", labels[0], t0, split, stage, mb, 0.0)))
        if t1 > split:
            self.records.append(_new(Record, (dev, "main", "pp", labels[1], split, t1, stage, mb, 0.0)))

    def _received(self, key: Hashable) -> None:
        """Arrival `key` is consumed: its event and its sender's notes go (each key is sent
        once and waited for once; kept, they would grow by a few per device and action)."""
        self.arrivals.pop(key, None)
        self.sent_from.pop(key, None)

    def _send_local(self, key: Hashable) -> None:
        self.sent_from[key] = (self.env._now, key[1])
        self._event(key).succeed()
