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
from simtrain.engine.dpstream import DataParallelStream
from simtrain.engine.p2p import PointToPoint
from simtrain.engine.smload import KIND as SM_KIND, SmContention, contended_overlap
from simtrain.engine.spans import Spans
from simtrain.engine.timeline import record
from simtrain.network.comm import Comm, NotPeriodic
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.layout import Coord

Proc = Generator[simpy.Event, object, None]


class Primitives(Spans, PointToPoint, DataParallelStream, SmContention):
    """Compute, communication and record-keeping steps shared by every action."""

    def _rec(self, dev: int, kind: str, label: str, start: float, stage: int = -1, mb: int = -1, stream: str = "main",
             nbytes: float = 0.0) -> None:
        end = self.env._now
        if end > start:
            self.records.append(record(dev, stream, kind, label, start, end, stage, mb, nbytes))

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
            t0 = self.env._now
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

    def _view(self, dim: str, dev: int):
        """`dev`'s `dim` collective as a group class (simtrain.engine.symmetry.GroupView)."""
        return self.classes.view(dim, dev)

    def prepare(self) -> None:
        """Register every transfer the plan will make, so link classes compile once. On a
        periodic network, a phase that is not invariant under the shift (a binary tree over
        the data-parallel replicas) sends the engine back to routing every flow."""
        if self.free:
            return
        try:
            self._prepare()
        except NotPeriodic:
            self.periodic = None
            self.net = FlowNetwork(self.env, self.plan.topology)
            self.comm = Comm(self.net, self.plan.topology, self.plan.scenario.engine.collective_algo,
                             self.comm.call_latency_s, ring_ops=self.comm.ring_ops)
            self.comm.alone = self.classes.kind != "pipeline"
            self._phases.clear()
            self._a2a.clear()  # (the expert all-to-alls: simtrain.engine.moe_actions)
            self._prepare()

    def _prepare(self) -> None:
        plan = self.plan
        for key, hit in self.classes.preload.items():  # loads the what-if classes summed already
            self.comm._pair_loads.setdefault(key, hit)
        lc = plan.stages[0].layer
        for dev in plan.simulated:
            pp = self._coord(dev).pp
            if lc.tp_bytes > 0:
                v = self._view("tp", dev)
                for op in ("all-reduce", "all-gather", "reduce-scatter") if self.sp else ("all-reduce",):
                    self.comm.prepare(op, v.group, v.copies, [lc.tp_bytes])
            if getattr(self, "tied_stages", None) and pp == plan.schedule.placement[self.tied_stages[0]]:
                (a, b), copies = self._tied_group(dev)  # the tied embedding's gradient all-reduce
                self.comm.prepare("all-reduce", (a, b), copies, [self.tied_bytes])
            if getattr(self, "pipe_work", None):  # DeepSpeed's boundary-tensor all-gathers
                v = self._view("tp", dev)
                self.comm.prepare("all-gather", v.group, v.copies, [self.pipe_full_bytes])
            mine = [st for st in plan.stages if plan.schedule.placement[st.index] == pp]
            v = self._view(self.dp_dim, dev)
            for op, sizes in self._dp_sizes(mine).items():
                self.comm.prepare(op, v.group, v.copies, sorted(sizes))
            self._moe_prepare(dev, mine)
            if lc.cp_bytes > 0:
                v = self._view("cp", dev)
                for op in ("all-gather", "reduce-scatter"):
                    self.comm.prepare(op, v.group, v.copies, [lc.cp_bytes])
            sch = plan.schedule
            for st in mine:
                for nb, end in ((st.index - 1, sch.is_first(st.index)), (st.index + 1, sch.is_last(st.index))):
                    if not end:
                        peer = self._peer_rank(dev, nb)
                        if peer != dev:
                            self.comm.prepare("send-recv", (dev, peer), self.classes.p2p_copies(dev, peer), [plan.p2p_bytes])
        self._plan_coalescing()

    def _plan_coalescing(self) -> None:
        """Where a device's TP collectives run on links nothing else uses, each takes its
        idle-network time exactly, so a whole action can run as one timeout with its
        per-layer records laid out arithmetically (far fewer events, same timeline)."""
        lc = self.plan.stages[0].layer
        if self.free or self.fsdp or lc.cp_bytes > 0:
            return
        size = 0.0 if self.overlap_tp else lc.tp_bytes
        speed = self.plan.speed
        seen: dict[tuple, list[float] | None] = {}  # (group, copies) -> times (None: shared links)
        for dev in self.plan.simulated:
            v = self._view("tp", dev)
            group, copies = v.group, v.copies
            if size <= 0 or len(group) == 1:
                self.tp_time[dev] = 0.0
                continue
            if self.jitter or len({speed.get(m, 1.0) for m in group}) > 1:
                continue  # members at different speeds wait for each other at every collective
            gkey = (group, copies)
            if gkey in seen:  # a group's members ask the same
                times = seen[gkey]
            else:
                times = seen[gkey] = self._tp_times(group, copies, size)
            if times is not None:
                self.tp_time[dev] = times[0]
                if self.sp:
                    self.tp_split[dev] = (times[1], times[2])

    def _tp_times(self, group: tuple[int, ...], copies: tuple[int, ...], size: float) -> list[float] | None:
        """Idle-network seconds of the group's TP collectives, or None when one of them
        shares links with other bundle types."""
        times = []
        for op in ("all-reduce", "all-gather", "reduce-scatter") if self.sp else ("all-reduce",):
            _, phases = self.comm.collective(op, group, size, copies)
            # keys are ((op, algo, group, copies), phase): the group's other algorithms don't count
            if not self.net.exclusive([ph.key for ph in phases], ignore=lambda k, g=group: k[0][2] == g):
                return None
            times.append(sum(self.net.uncontended_time(ph.key, ph.nbytes, ph.latency) for ph in phases))
        return times

    def collective(self, dev: int, dim: str, op: str, size: float) -> Proc:
        """Run a collective of `dev`'s `dim` group; the representatives of the classes among
        its members meet first (every device, in per-rank mode; none but `dev` when all
        members are in its class)."""
        ev = self._launch(dev, dim, op, size)
        if ev is not None:
            yield ev

    def _launch(self, dev: int, dim: str, op: str, size: float) -> simpy.Event | None:
        """Start `dev`'s part in a collective by callbacks (no process of its own): the
        event that fires when it is done, or None when there is nothing to wait for."""
        v = self._view(dim, dev)
        if len(v.group) == 1 or size <= 0:
            return None
        phases, solo = self._coll_phases(dev, dim, op, size)
        if len(v.reps) > 1:
            sk = (dev, v.key)
            k = (dim, v.key, self.seq[sk])
            self.seq[sk] += 1
            ev, last = self._arrive(k, len(v.reps))
            if last:
                if not solo:
                    self._chain(phases, ev.succeed)
                else:
                    done = None if self.free else self.net.run_alone(phases)
                    if done is None:
                        ev.succeed()
                    else:
                        done.callbacks.append(lambda _e: ev.succeed())
            return ev
        if solo:
            return None if self.free else self.net.run_alone(phases)
        ev = self.env.event()
        self._chain(phases, ev.succeed)
        return ev

    def _coll_phases(self, dev: int, dim: str, op: str, size: float) -> tuple[list, bool]:
        """The phases of `dev`'s `dim` collective, and whether they run on links of their own."""
        ckey = (dim, dev, op, size)
        phases = self._phases.get(ckey)
        if phases is None:
            v = self._view(dim, dev)
            _, phases = self.comm.collective(op, v.group, size, v.copies)
            self._phases[ckey] = phases
            self._solo[ckey] = self._exclusive_time(dev, dim, v.group, phases)
        return phases, self._solo[ckey]

    def _exclusive_time(self, dev: int, dim: str, group: tuple[int, ...], phases) -> bool:
        """A collective whose links no other bundle type uses takes its idle-network time
        exactly (no other transfer can share them while it runs: a group runs one at a time):
        then one event stands for its transfers (FlowNetwork.run_alone). A device's TP and
        CP collectives (with their copies) run one after another on its main stream, so
        where no other device takes part in them they may share links with each other.
        False where the links are shared with anything else, or when the network logs
        its rates (traces)."""
        if self.free:
            return True
        if self.net.rate_log is not None:
            return False
        groups = {group}
        if dim in ("tp", "cp"):
            views = [self._view(d, dev) for d in ("tp", "cp")]
            if all(len(w.reps) == 1 for w in views):
                groups |= {w.group for w in views}
        return self.net.exclusive([ph.key for ph in phases], ignore=lambda k: k[0][2] in groups)

    def _chain(self, phases, then: Any) -> None:
        """Run `phases` one after another on the flow network, then call `then()`: chained
        by callbacks rather than a process or events (same times, fewer events)."""
        if len(phases) == 1:  # the common case
            ph = phases[0]
            self.net.transfer(ph.key, ph.nbytes, ph.latency, then=then)
            return
        todo = list(phases)

        def step() -> None:
            if todo:
                ph = todo.pop(0)
                self.net.transfer(ph.key, ph.nbytes, ph.latency, then=step)
            else:
                then()

        step()

    def _overlapped(self, dev: int, dim: str, op: str, size: float, hidden: float, label: str, stage: int, mb: int, kind: str = "B") -> Proc:
        """A blocking collective of `dev`'s `dim` group with `hidden` seconds of compute
        running alongside it; only the excess of the collective is recorded as a wait."""
        if size <= 0 or self.free:
            yield from self._compute(dev, hidden, kind, label, stage, mb)
            return
        t0 = self.env._now
        hidden = self._scale(dev, hidden, kind, stage, mb)
        if hidden <= 0:  # nothing runs alongside: no separate process needed
            yield from self.collective(dev, dim, op, size)
            self._rec(dev, "cp" if dim == "cp" else "tp", f"{op}({dim})", t0, stage, mb)
            return
        coll = self._launch(dev, dim, op, size)  # runs alongside, by callbacks
        if dim == "tp" and coll is not None and self._tp_rate(dev) < 1.0:  # its NCCL blocks slow the compute
            yield from self._contended(dev, coll, t0, hidden, kind, label, stage, mb, f"{op}({dim})")
            return
        yield self.env.timeout(hidden)
        self._rec(dev, kind, label, t0, stage, mb)
        t1 = self.env._now
        if coll is not None and not coll.processed:
            yield coll
        self._rec(dev, "cp" if dim == "cp" else "tp", f"{op}({dim})", t1, stage, mb)

    def _contended(self, dev: int, coll: simpy.Event, t0: float, hidden: float, kind: str, label: str, stage: int,
                   mb: int, coll_label: str) -> Proc:
        """`_overlapped`'s compute beside a TP collective whose blocks leave it `_tp_rate` of
        the SMs (simtrain.engine.smload.contended_overlap): recorded as the compute, the
        part the blocks cost it (nccl_sm) and the collective's exposed rest."""
        ended: list[float] = []
        coll.callbacks.append(lambda _e: ended.append(self.env._now))
        yield self.env.timeout(hidden)
        self._rec(dev, kind, label, t0, stage, mb)
        t1 = self.env._now
        if not ended:
            yield coll
        ce, end = contended_overlap(t0, hidden, ended[0], self._tp_rate(dev))
        if end > self.env._now:
            yield self.net._at(end, None)
        if ce > t1:
            self.records.append(record(dev, "main", SM_KIND, label, t1, ce, stage, mb))
        if end > ce:
            self.records.append(record(dev, "main", "tp", coll_label, ce, end, stage, mb))

    def _pack(self, segs: list[tuple[str, float]]) -> tuple[tuple[tuple[str, float], ...], float]:
        """Segments without empty ones (merged to one per kind in coarse mode), and their total."""
        segs = [(k, d) for k, d in segs if d > 0]
        total = sum(d for _, d in segs)  # the same span in either detail
        if self.coarse:  # one record per kind: totals exact, per-layer order dropped
            sums: dict[str, float] = {}
            for kind, d in segs:
                sums[kind] = sums.get(kind, 0.0) + d
            segs = list(sums.items())
        return tuple(segs), total

    def _tp(self, dev: int, seconds_hidden: float, label: str, stage: int, mb: int, op: str = "all-reduce") -> Proc:
        """A TP collective on the main stream; `seconds_hidden` of weight-gradient compute runs
        alongside. In the forward, sequence parallelism's all-gather + reduce-scatter pair
        moves exactly the ring all-reduce's bytes, so one all-reduce stands for it; the
        backward runs the two separately (see `self.sp`)."""
        size = 0.0 if self.overlap_tp else self.plan.stages[stage].layer.tp_bytes
        yield from self._overlapped(dev, "tp", op, size, seconds_hidden, label, stage, mb)

    def _selective_recompute(self, dev: int, st, stage: int, mb: int) -> Proc:
        """A backward's selective recomputation: the layers' recompute time, then, with
        op-level selective checkpointing (torchtitan), which saves no all-gather output (its
        _save_list holds mm, SDPA, reduce_scatter_tensor and max: torchtitan/models/llama3/
        infra/parallelize.py), each block's sequence-parallel all-gather again, two per
        layer, for the GEMMs it recomputes and the weight gradients that read the gathered
        input. Overlapped TP (async TP) pipelines them with the recomputed GEMMs instead:
        their waits are in the layer's recompute time (simtrain.workload.costs._op_selective)."""
        yield from self._compute(dev, st.layers * st.layer.recompute, "R", f"R{mb}", stage, mb)
        if self.sp and not self.overlap_tp and self.plan.scenario.parallel.recompute == "op-selective":
            for _ in range(2 * st.layers):
                yield from self._tp(dev, 0.0, f"R{mb}", stage, mb, op="all-gather")

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

    def _peer_rank(self, dev: int, stage: int) -> int:
        """The device that runs virtual stage `stage` for `dev`'s replica and TP/CP rank."""
        return self.classes.peer_rank(dev, self.plan.schedule.placement[stage])

    # ---- actions ------------------------------------------------------------------------

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
