"""The engine's primitives: compute intervals, collectives and their rendezvous,
point-to-point sends and waits, the DP stream, and the timeline records they leave.

`simtrain.engine.actions.Engine` builds on these to walk each device's action list; the
state they use (records, arrival events, groups, the flow network and its collectives) is
set up in `Engine.__init__`. Split from the engine so that each module reads in one sitting.
"""

from __future__ import annotations

from typing import Any, Generator, Hashable

import simpy

from simtrain.engine import whatif
from simtrain.engine.plan import StageWork
from simtrain.engine.timeline import Record
from simtrain.scenario.layout import Coord

Proc = Generator[simpy.Event, object, None]


class Primitives:
    """Compute, communication and record-keeping steps shared by every action."""

    def _rec(self, dev: int, kind: str, label: str, start: float, stage: int = -1, mb: int = -1, stream: str = "main",
             nbytes: float = 0.0) -> None:
        end = self.env.now
        if end > start:
            self.records.append(Record(dev, stream, kind, label, start, end, stage, mb, nbytes))

    def _scale(self, dev: int, seconds: float, kind: str, stage: int, mb: int) -> float:
        """Compute time on this device under the what-ifs (straggler factor, jitter)."""
        if not self.varied or seconds <= 0:
            return seconds
        f = self.plan.speed.get(dev, 1.0)
        if self.jitter:
            f *= whatif.jitter(self.plan.scenario.whatif, f"{dev}:{kind}:{stage}:{mb}")
        return seconds * f

    def _compute(self, dev: int, seconds: float, kind: str, label: str, stage: int, mb: int) -> Proc:
        seconds = self._scale(dev, seconds, kind, stage, mb)
        if seconds > 0:
            t0 = self.env.now
            yield self.env.timeout(seconds)
            self._rec(dev, kind, label, t0, stage, mb)

    def _event(self, key: Hashable) -> simpy.Event:
        ev = self.arrivals.get(key)
        if ev is None:
            ev = self.arrivals[key] = self.env.event()
        return ev

    def _coord(self, dev: int) -> Coord:
        c = self._coords.get(dev)
        if c is None:
            c = self._coords[dev] = self.plan.layout.coord(dev)
        return c

    def _group(self, dim: str, dev: int) -> tuple[int, ...]:
        key = (dim, dev)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = self.plan.layout.group(dim, dev)
        return g

    def prepare(self) -> None:
        """Register every transfer the plan will make, so link classes compile once."""
        if self.free:
            return
        plan = self.plan
        dp_ops = ("all-reduce",) if self.zero == 0 else ("reduce-scatter", "all-gather")
        lc = plan.stages[0].layer
        for dev in plan.simulated:
            pp = self._coord(dev).pp
            if lc.tp_bytes > 0:
                for op in ("all-reduce", "all-gather", "reduce-scatter") if self.sp else ("all-reduce",):
                    self.comm.prepare(op, self._group("tp", dev), plan.copies("tp", pp), [lc.tp_bytes])
            mine = [st for st in plan.stages if plan.schedule.placement[st.index] == pp]
            grads = [st.layers * st.grad_bytes_per_layer + st.end_grad_bytes for st in mine]
            sizes = sorted({min(self.bucket_bytes, g) for g in grads if g > 0})
            for op in dp_ops:
                scale = 2 / plan.grad_bytes if op == "all-gather" else 1.0  # bf16 parameters vs gradients
                self.comm.prepare(op, self._group(self.dp_dim, dev), plan.copies(self.dp_dim, pp), [x * scale for x in sizes])
            if lc.cp_bytes > 0:
                for op in ("all-gather", "reduce-scatter"):
                    self.comm.prepare(op, self._group("cp", dev), plan.copies("cp", pp), [lc.cp_bytes])
            sch = plan.schedule
            for st in mine:
                for nb, end in ((st.index - 1, sch.is_first(st.index)), (st.index + 1, sch.is_last(st.index))):
                    if not end:
                        peer = self._peer(dev, nb)
                        if peer != dev:
                            self.comm.prepare("send-recv", (dev, peer), plan.copies("pp", pp), [plan.p2p_bytes])
        self._plan_coalescing()

    def _plan_coalescing(self) -> None:
        """Where a device's TP collectives run on links nothing else uses, each takes its
        idle-network time exactly, so a whole action can run as one timeout with its
        per-layer records laid out arithmetically (far fewer events, same timeline)."""
        lc = self.plan.stages[0].layer
        if self.free or self.fsdp or lc.cp_bytes > 0:
            return
        size = 0.0 if self.overlap_tp else lc.tp_bytes
        for dev in self.plan.simulated:
            group = self._group("tp", dev)
            if size <= 0 or len(group) == 1:
                self.tp_time[dev] = 0.0
                continue
            copies = self.plan.copies("tp", self._coord(dev).pp)
            times = []
            for op in ("all-reduce", "all-gather", "reduce-scatter") if self.sp else ("all-reduce",):
                _, phases = self.comm.collective(op, group, size, copies)
                # keys are ((op, algo, group, copies), phase): the group's other algorithms don't count
                if not self.net.exclusive([ph.key for ph in phases], ignore=lambda k, g=group: k[0][2] == g):
                    break
                times.append(sum(self.net.uncontended_time(ph.key, ph.nbytes, ph.latency) for ph in phases))
            else:
                self.tp_time[dev] = times[0]
                if self.sp:
                    self.tp_split[dev] = (times[1], times[2])

    def collective(self, dev: int, dim: str, op: str, size: float) -> Proc:
        """Run a collective of `dev`'s `dim` group; in per-rank mode members rendezvous."""
        group = self._group(dim, dev)
        if len(group) == 1 or size <= 0:
            return
        ckey = (dim, dev, op, size)
        phases = self._phases.get(ckey)
        if phases is None:
            _, phases = self.comm.collective(op, group, size, self.plan.copies(dim, self._coord(dev).pp))
            self._phases[ckey] = phases
        if self._all_simulated(group):
            k = (dim, group, self.seq[(dev, group)])
            self.seq[(dev, group)] += 1
            ev, last = self._arrive(k, len(group))
            if last:
                self._chain(phases, ev.succeed)
            yield ev
        else:
            for ph in phases:
                yield self.net.transfer(ph.key, ph.nbytes, ph.latency)

    def _chain(self, phases, then: Any) -> None:
        """Run `phases` one after another on the flow network, then call `then()`: chained
        by event callbacks rather than a process (same times, fewer events)."""
        if len(phases) == 1:  # the common case: one callback, no bookkeeping
            ph = phases[0]
            self.net.transfer(ph.key, ph.nbytes, ph.latency).callbacks.append(lambda _e: then())
            return
        todo = list(phases)

        def step(_e: Any = None) -> None:
            if todo:
                ph = todo.pop(0)
                self.net.transfer(ph.key, ph.nbytes, ph.latency).callbacks.append(step)
            else:
                then()

        step()

    def _overlapped(self, dev: int, dim: str, op: str, size: float, hidden: float, label: str, stage: int, mb: int, kind: str = "B") -> Proc:
        """A blocking collective of `dev`'s `dim` group with `hidden` seconds of compute
        running alongside it; only the excess of the collective is recorded as a wait."""
        if size <= 0 or self.free:
            yield from self._compute(dev, hidden, kind, label, stage, mb)
            return
        t0 = self.env.now
        hidden = self._scale(dev, hidden, kind, stage, mb)
        if hidden <= 0:  # nothing runs alongside: no separate process needed
            yield from self.collective(dev, dim, op, size)
            self._rec(dev, "cp" if dim == "cp" else "tp", f"{op}({dim})", t0, stage, mb)
            return
        coll = self.env.process(self.collective(dev, dim, op, size))
        if hidden > 0:
            yield self.env.timeout(hidden)
            self._rec(dev, kind, label, t0, stage, mb)
        t1 = self.env.now
        yield coll
        self._rec(dev, "cp" if dim == "cp" else "tp", f"{op}({dim})", t1, stage, mb)

    def _tp(self, dev: int, seconds_hidden: float, label: str, stage: int, mb: int, op: str = "all-reduce") -> Proc:
        """A TP collective on the main stream; `seconds_hidden` of weight-gradient compute runs
        alongside. In the forward, sequence parallelism's all-gather + reduce-scatter pair
        moves exactly the ring all-reduce's bytes, so one all-reduce stands for it; the
        backward runs the two separately (see `self.sp`)."""
        size = 0.0 if self.overlap_tp else self.plan.stages[stage].layer.tp_bytes
        yield from self._overlapped(dev, "tp", op, size, seconds_hidden, label, stage, mb)

    def _cp(self, dev: int, seg: float, attn: float, op: str, kind: str, label: str, stage: int, mb: int) -> Proc:
        """Compute segment `seg` containing `attn` seconds of attention, with the CP K/V
        exchange: exposed before it (all-gather form) or hidden behind attention (ring)."""
        size = self.plan.stages[stage].layer.cp_bytes
        if self.cp_ring:
            yield from self._compute(dev, seg - attn, kind, label, stage, mb)
            yield from self._overlapped(dev, "cp", op, size, attn, label, stage, mb, kind)
        elif op == "all-gather":
            yield from self._overlapped(dev, "cp", op, size, 0.0, label, stage, mb, kind)
            yield from self._compute(dev, seg, kind, label, stage, mb)
        else:
            yield from self._compute(dev, seg, kind, label, stage, mb)
            yield from self._overlapped(dev, "cp", op, size, 0.0, label, stage, mb, kind)

    def _send(self, dev: int, dst: int, key: Hashable, stage: int, mb: int, kind: str) -> None:
        self.send_start[key] = self.env.now
        self.sender[key] = dev
        ev = self._event(key)
        if self.free:
            ev.succeed()
            return
        pkey = ("p2p", dev, dst)
        phases = self._phases.get(pkey)
        if phases is None:
            copies = self.plan.copies("pp", self._coord(dev).pp)
            phases = self._phases[pkey] = self.comm.p2p(dev, dst, self.plan.p2p_bytes, copies)

        t0 = self.env.now
        records = self.records

        def sent() -> None:
            end = self.env.now
            if end > t0:
                records.append(Record(dev, "comm", "pp", f"send {kind}{mb}", t0, end, stage, mb, self.plan.p2p_bytes))
            ev.succeed()

        self._chain(phases, sent)

    def _send_blocking(self, dev: int, dst: int, key: Hashable, stage: int, mb: int, kind: str) -> Proc:
        """Send; with synchronous point-to-point (SC21-era Megatron waited for its sends
        before the next compute) the sender's stream waits for the transfer."""
        self._send(dev, dst, key, stage, mb, kind)
        if not self.async_p2p:
            ev = self._event(key)
            if not ev.processed:
                t0 = self.env.now
                yield ev
                self._rec(dev, "pp", f"send {kind}{mb}", t0, stage, mb)

    def _wait(self, dev: int, key: Hashable, stage: int, mb: int, what: str) -> Proc:
        ev = self._event(key)
        if ev.processed:
            return
        t0 = self.env.now
        yield ev
        t1 = self.env.now
        ss = self.send_start.get(key, t1)
        split = min(max(ss, t0), t1)
        if key in self.sender:  # the wait ends because this device sent at `ss`
            self.waited_on[(dev, t1)] = (self.sender[key], ss)
        if split > t0:
            self.records.append(Record(dev, "main", "bubble", f"wait {what}", t0, split, stage, mb))
        if t1 > split:
            self.records.append(Record(dev, "main", "pp", f"recv {what}", split, t1, stage, mb))

    def _peer(self, dev: int, stage: int) -> int:
        c = self._coord(dev)
        rank = self.plan.schedule.placement[stage]
        L = self.plan.layout
        if self.plan.symmetric:
            return L.rank(Coord(0, rank, 0, 0))
        return L.rank(Coord(c.dp, rank, c.cp, c.tp))

    # ---- data-parallel stream -----------------------------------------------------------

    def _dp_launch(self, dev: int, op: str, size: float, label: str, on_done: simpy.Event | None = None) -> simpy.Event:
        prev = self.dp_tail.get(dev)
        done = on_done or self.env.event()

        def proc() -> Proc:
            if prev is not None and not prev.processed:
                yield prev
            t0 = self.env.now
            yield from self.collective(dev, self.dp_dim, op, size)
            self._rec(dev, "dp", label, t0, stream="comm", nbytes=size)
            done.succeed()

        self.env.process(proc())
        self.dp_tail[dev] = done
        self.dp_pending[dev].append(done)
        return done

    # ---- actions ------------------------------------------------------------------------

    def _tp_sync(self, dev: int, what: Hashable) -> Proc:
        """Per-rank mode: the members of a TP group start a coalesced action together."""
        group = self._group("tp", dev)
        if len(group) == 1 or not self._all_simulated(group):
            return
        k = ("sync", group, what)
        ev, last = self._arrive(k, len(group))
        if last:
            self.last_arrival[k] = dev
            ev.succeed()
        if not ev.processed:
            t0 = self.env.now
            yield ev
            self.waited_on[(dev, self.env.now)] = (self.last_arrival[k], self.env.now)
            self._rec(dev, "tp", "wait tp peers", t0)

    def _arrive(self, key: Hashable, n: int) -> tuple[simpy.Event, bool]:
        """Rendezvous of `n` members on `key`: the shared event, and whether this arrival
        is the last one (which then starts whatever the members wait for)."""
        entry = self.rdv.get(key)
        if entry is None:
            entry = self.rdv[key] = [0, self.env.event()]
        entry[0] += 1
        if entry[0] == n:
            del self.rdv[key]
            return entry[1], True
        return entry[1], False

    def _all_simulated(self, group: tuple[int, ...]) -> bool:
        v = self._simulated_group.get(group)
        if v is None:
            v = self._simulated_group[group] = all(g in self.simset for g in group)
        return v

    def _fsdp_gathers(self, dev: int, st: StageWork):
        """torch FSDP: all-gather each layer's parameters (bf16) just ahead of its use,
        prefetching one layer ahead on the DP stream (FSDP's forward/backward prefetch)."""
        size = st.grad_bytes_per_layer / self.plan.grad_bytes * 2
        nxt = self._dp_launch(dev, "all-gather", size, "all-gather(fsdp)")
        for i in range(st.layers):
            cur = nxt
            if i + 1 < st.layers:
                nxt = self._dp_launch(dev, "all-gather", size, "all-gather(fsdp)")
            yield cur

    def _wait_gather(self, dev: int, ev: simpy.Event, stage: int, mb: int) -> Proc:
        if not ev.processed:
            t0 = self.env.now
            yield ev
            self._rec(dev, "dp", "wait params", t0, stage, mb)

    def _grad_ready(self, dev: int, pending: float, flush: bool = False) -> float:
        """Launch a DP bucket once `pending` gradient bytes fill one (or at the end).
        Without overlap every gradient waits for the end of the backward pass."""
        if not self.overlap_grad:
            if flush:
                self._deferred[dev] += pending
                return 0.0
            return pending
        if pending >= self.bucket_bytes or (flush and pending > 0):
            op = "all-reduce" if self.zero == 0 else "reduce-scatter"
            self._dp_launch(dev, op, pending, f"{op}(dp)")
            return 0.0
        return pending

    # ---- device process -----------------------------------------------------------------

    def _send_local(self, key: Hashable) -> None:
        self.send_start[key] = self.env.now
        self.sender[key] = key[1]
        self._event(key).succeed()
