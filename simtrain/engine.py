"""The simpy engine: runs the plan's per-rank action lists over the flow network.

One simpy process per simulated device walks its pipeline rank's action list in order:
- F: wait for the activation from the previous virtual stage (point-to-point transfer
  along the topology), run the stage's layers (compute segments separated by TP
  collectives), send the activation on.
- B: wait for the gradient from the next virtual stage, recompute if configured, run the
  layers backwards; Megatron overlaps each TP all-reduce of input gradients with the
  weight-gradient GEMMs, so only the excess is exposed. Send the gradient back. During a
  stage's last backward its gradients are reduced over the DP group in buckets on a
  separate stream, overlapped with the remaining backward work.
- W (zero-bubble schedules): the weight-gradient GEMMs alone.
Then wait for the DP reductions, run the optimizer. With a distributed optimizer the
updated parameters are all-gathered on the DP stream at the start of the (next) step,
overlapped with the forward pass until a chunk's first forward needs them.

Every interval of a device's main stream is recorded as compute (F, B, W, R, opt) or as a
wait (tp, pp, dp, bubble): a wait for a pipeline neighbour counts as `pp` while the
neighbour's transfer is in flight and as `bubble` before it has started.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Generator, Hashable

import simpy

from simtrain import whatif
from simtrain.comm import Comm
from simtrain.layout import Coord
from simtrain.network import FlowNetwork
from simtrain.plan import Plan, StageWork
from simtrain.schedule import Action
from simtrain.timeline import Record

Proc = Generator[simpy.Event, object, None]


class Engine:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.env = simpy.Environment()
        eng = plan.scenario.engine
        self.net = FlowNetwork(self.env, plan.topology, free=eng.comm == "free")
        self.comm = Comm(self.net, plan.topology, eng.collective_algo)
        self.records: list[Record] = []
        self.arrivals: dict[Hashable, simpy.Event] = {}
        self.send_start: dict[Hashable, float] = {}
        self.dp_tail: dict[int, simpy.Event] = {}
        self.dp_pending: dict[int, list[simpy.Event]] = defaultdict(list)
        self.param_ready: dict[tuple[int, int], simpy.Event] = {}
        self.rdv: dict[Hashable, list] = {}
        self.seq: dict[Hashable, int] = defaultdict(int)
        self.simset = set(plan.simulated)
        self.done_at: dict[int, float] = {}
        L = plan.layout
        self.S = L.pp * L.vp
        self.m = L.microbatches
        par = plan.scenario.parallel
        self.zero = par.zero
        self.bucket_bytes = max(40e6, 1e6 * L.dp) * plan.grad_bytes  # Megatron DDP default bucket
        self.overlap_grad = par.overlap_grad_reduce
        self.overlap_tp = plan.scenario.engine.overlap_tp_comm
        self.async_tp = plan.scenario.engine.async_tp_backward
        # Sequence parallelism changes the backward's TP traffic (Korthikanti et al. 2022 §4.2.2;
        # Megatron-LM's LinearWithGradAccumulationAndAsyncCommunication): the row-parallel
        # linear's backward must all-gather its sequence-sharded output gradient before any
        # GEMM can start (exposed), and the column-parallel linear reduce-scatters its input
        # gradient alongside the weight-gradient GEMM. Without SP the one all-reduce of the
        # input gradient runs alongside the weight-gradient GEMM.
        self.sp = plan.scenario.parallel.sequence_parallel and plan.layout.tp > 1
        self.tp_split: dict[int, tuple[float, float]] = {}  # coalesced SP: (all-gather, reduce-scatter) s
        self.async_p2p = plan.scenario.engine.async_p2p
        self.full_recompute = par.recompute == "full"
        self.jitter = plan.scenario.whatif.compute_jitter > 0
        self.varied = bool(plan.speed) or self.jitter
        self.free = self.net.free
        self._groups: dict[tuple[str, int], tuple[int, ...]] = {}
        self._phases: dict[Hashable, list] = {}
        self._coords: dict[int, Coord] = {}
        self._simulated_group: dict[tuple[int, ...], bool] = {}
        self.tp_time: dict[int, float] = {}  # exact TP all-reduce time where coalescing applies
        detail = plan.scenario.engine.detail
        self.coarse = detail == "action" or (detail == "auto" and len(plan.simulated) > 512)
        self._labels: dict[Action, str] = {}
        self._seg_cache: dict[Hashable, tuple] = {}
        # critical-path bookkeeping: who sent what, and which wait ended because of whom
        self.sender: dict[Hashable, int] = {}
        self.waited_on: dict[tuple[int, float], tuple[int, float]] = {}
        self.last_arrival: dict[Hashable, int] = {}
        self.dp_dim = "dpcp" if L.cp > 1 else "dp"
        self.cp_ring = par.cp_algo == "ring"
        # torch-style FSDP: per-layer parameter all-gather in forward and backward and a
        # per-micro-batch gradient reduce-scatter; Llama 3's variant (parameters kept after the
        # forward) communicates like the distributed optimizer (zero = 1).
        self.fsdp = par.zero == 3 and par.reshard_after_forward and L.dp * L.cp > 1

    # ---- helpers ------------------------------------------------------------------------
    def _rec(self, dev: int, kind: str, label: str, start: float, stage: int = -1, mb: int = -1, stream: str = "main") -> None:
        end = self.env.now
        if end > start:
            self.records.append(Record(dev, stream, kind, label, start, end, stage, mb))

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
            for st in mine:
                for nb in (st.index - 1, st.index + 1):
                    if 0 <= nb < self.S:
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

        def sent() -> None:
            self._rec(dev, "pp", f"send {kind}{mb}", t0, stage, mb, stream="comm")
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
            self._rec(dev, "dp", label, t0, stream="comm")
            done.succeed()

        self.env.process(proc())
        self.dp_tail[dev] = done
        self.dp_pending[dev].append(done)
        return done

    # ---- actions ------------------------------------------------------------------------
    def _label(self, a: Action) -> str:
        lab = self._labels.get(a)
        if lab is None:  # one string object per action, shared by all its records
            lab = self._labels[a] = repr(a) if self.plan.layout.vp > 1 else f"{a.kind}{a.microbatch}"
        return lab

    def forward(self, dev: int, st: StageWork, a: Action, kind: str = "F") -> Proc:
        lab = self._label(a) if kind == "F" else f"R{a.microbatch}"
        lc, mb = st.layer, a.microbatch
        pre = st.embed.fwd if (st.embed and kind == "F") else 0.0
        post = st.head.fwd if (st.head and kind == "F") else 0.0
        if self._fast(lc) and not self.fsdp:
            total = pre + st.layers * (lc.fwd[0] + lc.fwd[1]) + post
            yield from self._compute(dev, total, kind, lab, st.index, mb)
            return
        tpt = self.tp_time.get(dev)
        if tpt is not None:
            yield from self._tp_sync(dev, (kind, a))
            key = ("F", st.index, kind, tpt)
            segs = self._seg_cache.get(key)
            if segs is None:
                one = ((kind, lc.fwd[0]), ("tp", tpt), (kind, lc.fwd[1]), ("tp", tpt))
                segs = self._seg_cache[key] = self._pack([(kind, pre), *one * st.layers, (kind, post)])
            yield from self._segments(dev, segs, lab, st.index, mb)
            return
        yield from self._compute(dev, pre, kind, lab, st.index, mb)
        gather = self._fsdp_gathers(dev, st) if self.fsdp else None
        for _ in range(st.layers):
            if gather is not None:
                yield from self._wait_gather(dev, next(gather), st.index, mb)
            if lc.cp_bytes > 0:
                yield from self._cp(dev, lc.fwd[0], lc.attn_fwd, "all-gather", kind, lab, st.index, mb)
            else:
                yield from self._compute(dev, lc.fwd[0], kind, lab, st.index, mb)
            yield from self._tp(dev, 0.0, lab, st.index, mb)
            yield from self._compute(dev, lc.fwd[1], kind, lab, st.index, mb)
            yield from self._tp(dev, 0.0, lab, st.index, mb)
        yield from self._compute(dev, post, kind, lab, st.index, mb)

    def _pack(self, segs: list[tuple[str, float]]) -> tuple[tuple[tuple[str, float], ...], float]:
        """Segments without empty ones (merged to one per kind in coarse mode), and their total."""
        segs = [(k, d) for k, d in segs if d > 0]
        if self.coarse:  # one record per kind: totals exact, per-layer order dropped
            sums: dict[str, float] = {}
            for kind, d in segs:
                sums[kind] = sums.get(kind, 0.0) + d
            segs = list(sums.items())
        return tuple(segs), sum(d for _, d in segs)

    def _segments(self, dev: int, packed: tuple[tuple[tuple[str, float], ...], float], label: str, stage: int, mb: int) -> Proc:
        """Run consecutive main-stream segments (from `_pack`) as one timeout; record each."""
        segs, total = packed
        if self.varied:
            segs = tuple((k, d if k == "tp" else self._scale(dev, d, k, stage, mb)) for k, d in segs)
            total = sum(d for _, d in segs)
        if total <= 0:
            return
        t = self.env.now
        yield self.env.timeout(total)
        recs = self.records
        for kind, d in segs:
            if d > 0:
                recs.append(Record(dev, "main", kind, "all-reduce(tp)" if kind == "tp" else label, t, t + d, stage, mb))
                t += d

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

    def _fast(self, lc) -> bool:
        """No collective inside the layers: run a whole action as one compute span."""
        return self.free or ((lc.tp_bytes <= 0 or self.overlap_tp) and lc.cp_bytes <= 0)

    def backward(self, dev: int, st: StageWork, a: Action, with_weight: bool, last: bool) -> Proc:
        """Input-gradient (and weight-gradient unless split) backward of one micro-batch.
        `last`: the stage's final backward, during which its gradients become ready."""
        lab = self._label(a)
        lc, mb = st.layer, a.microbatch
        if st.head:
            yield from self._compute(dev, st.head.bwd_input + (st.head.bwd_weight if with_weight else 0.0), "B", lab, st.index, mb)
        wg = lc.bwd_weight / 2 if with_weight else 0.0
        pending = 0.0
        tpt = self.tp_time.get(dev)
        if self._fast(lc) and not (last and self.overlap_grad) and not self.fsdp:
            yield from self._compute(dev, st.layers * (sum(lc.bwd_input) + 2 * wg), "B", lab, st.index, mb)
            pending = st.layers * st.grad_bytes_per_layer if last else 0.0
        elif tpt is not None and not (last and self.overlap_grad):
            yield from self._tp_sync(dev, ("B", a))
            # each TP all-reduce of input gradients runs alongside half the weight-gradient GEMMs
            key = ("B", st.index, tpt, wg)
            segs = self._seg_cache.get(key)
            if segs is None:
                if self.sp and tpt > 0:
                    ag, rs = self.tp_split[dev]
                    # row-parallel output-gradient all-gather first (exposed), the block's
                    # GEMMs, then the input-gradient reduce-scatter beside the weight gradient
                    block = [("tp", ag), ("B", lc.bwd_input[1]), ("B", wg), ("tp", max(0.0, rs - wg) if self.async_tp else rs),
                             ("tp", ag), ("B", lc.bwd_input[0]), ("B", wg), ("tp", max(0.0, rs - wg) if self.async_tp else rs)]
                    one = block
                else:
                    hidden = [("B", wg), ("tp", max(0.0, tpt - wg) if self.async_tp else tpt)]
                    one = [("B", lc.bwd_input[1])] + hidden + [("B", lc.bwd_input[0])] + hidden
                segs = self._seg_cache[key] = self._pack(one * st.layers)
            yield from self._segments(dev, segs, lab, st.index, mb)
            pending = st.layers * st.grad_bytes_per_layer if last else 0.0
        else:
            gather = self._fsdp_gathers(dev, st) if self.fsdp else None
            hid = wg if self.async_tp else 0.0
            ser = 0.0 if self.async_tp else wg
            for _ in range(st.layers):
                if gather is not None:
                    yield from self._wait_gather(dev, next(gather), st.index, mb)
                for i, seg in enumerate((lc.bwd_input[1], lc.bwd_input[0])):
                    if self.sp:
                        yield from self._tp(dev, 0.0, lab, st.index, mb, "all-gather")
                    if i == 1 and lc.cp_bytes > 0:
                        yield from self._cp(dev, seg, lc.attn_bwd, "reduce-scatter", "B", lab, st.index, mb)
                        if ser:
                            yield from self._compute(dev, ser, "B", lab, st.index, mb)
                    else:
                        yield from self._compute(dev, seg + ser, "B", lab, st.index, mb)
                    yield from self._tp(dev, hid, lab, st.index, mb, "reduce-scatter" if self.sp else "all-reduce")
                if self.fsdp and with_weight:
                    # torch FSDP reduce-scatters every layer's gradients after every micro-batch
                    self._dp_launch(dev, "reduce-scatter", st.grad_bytes_per_layer, "reduce-scatter(fsdp)")
                elif last:
                    pending = self._grad_ready(dev, pending + st.grad_bytes_per_layer)
        if st.embed:
            yield from self._compute(dev, st.embed.bwd_weight if with_weight else 0.0, "B", lab, st.index, mb)
        if last:
            self._grad_ready(dev, pending + st.end_grad_bytes, flush=True)

    def weight(self, dev: int, st: StageWork, a: Action, last: bool) -> Proc:
        lab = self._label(a)
        lc = st.layer
        extra = (st.head.bwd_weight if st.head else 0.0) + (st.embed.bwd_weight if st.embed else 0.0)
        if not (last and self.overlap_grad):
            yield from self._compute(dev, st.layers * lc.bwd_weight + extra, "W", lab, st.index, a.microbatch)
            if last:
                self._grad_ready(dev, st.layers * st.grad_bytes_per_layer + st.end_grad_bytes, flush=True)
            return
        pending = 0.0
        for _ in range(st.layers):
            yield from self._compute(dev, lc.bwd_weight, "W", lab, st.index, a.microbatch)
            pending = self._grad_ready(dev, pending + st.grad_bytes_per_layer)
        yield from self._compute(dev, extra, "W", lab, st.index, a.microbatch)
        self._grad_ready(dev, pending + st.end_grad_bytes, flush=True)

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
    def device(self, dev: int) -> Proc:
        plan = self.plan
        c = self._coord(dev)
        acts = plan.schedule.actions[c.pp]
        split = plan.schedule.split_backward
        S, m = self.S, self.m
        # distributed optimizer: parameters all-gathered per chunk, overlapped with forward
        # (Megatron's overlap_param_gather): each chunk's first bucket must arrive before its
        # first forward; the rest streams in behind it while the forward runs.
        if self.zero >= 1 and plan.layout.dp * plan.layout.cp > 1 and not self.free and not self.fsdp:
            bucket = self.bucket_bytes / plan.grad_bytes  # parameters per bucket
            for st in plan.stages:
                if plan.schedule.placement[st.index] == c.pp:
                    first = min(bucket, st.params)
                    self.param_ready[(dev, st.index)] = self._dp_launch(dev, "all-gather", first * 2, "all-gather(dp)")
                    if st.params > first:
                        self._dp_launch(dev, "all-gather", (st.params - first) * 2, "all-gather(dp)")
        last_b = {s: 0 for s in range(S)}
        for a in acts:
            st = plan.stages[a.stage]
            mb = a.microbatch
            if a.kind == "F":
                if a.stage > 0:
                    yield from self._wait(dev, ("F", dev, a.stage, mb), a.stage, mb, f"F{mb}")
                ready = self.param_ready.pop((dev, a.stage), None)
                if ready is not None and not ready.processed:
                    t0 = self.env.now
                    yield ready
                    self._rec(dev, "dp", "wait params", t0, a.stage, mb)
                yield from self.forward(dev, st, a)
                if a.stage < S - 1:
                    peer = self._peer(dev, a.stage + 1)
                    if peer == dev:
                        self._send_local(("F", peer, a.stage + 1, mb))
                    else:
                        yield from self._send_blocking(dev, peer, ("F", peer, a.stage + 1, mb), a.stage, mb, "F")
            elif a.kind == "B":
                if a.stage < S - 1:
                    yield from self._wait(dev, ("B", dev, a.stage, mb), a.stage, mb, f"B{mb}")
                if st.layer.recompute > 0:
                    if self.full_recompute:  # the whole forward again, TP collectives included
                        yield from self.forward(dev, st, a, kind="R")
                    else:  # selective: only the attention core (QK^T, softmax, AV) is recomputed
                        yield from self._compute(dev, st.layers * st.layer.recompute, "R", f"R{mb}", a.stage, mb)
                last_b[a.stage] += 1
                last = last_b[a.stage] == m
                yield from self.backward(dev, st, a, with_weight=not split, last=last and not split)
                if a.stage > 0:
                    peer = self._peer(dev, a.stage - 1)
                    if peer == dev:
                        self._send_local(("B", peer, a.stage - 1, mb))
                    else:
                        yield from self._send_blocking(dev, peer, ("B", peer, a.stage - 1, mb), a.stage, mb, "B")
            else:  # W
                self._w_count[(dev, a.stage)] += 1
                yield from self.weight(dev, st, a, last=self._w_count[(dev, a.stage)] == m)
        if not self.overlap_grad and self._deferred[dev] > 0:
            op = "all-reduce" if self.zero == 0 else "reduce-scatter"
            self._dp_launch(dev, op, self._deferred[dev], f"{op}(dp)")
        pending = [e for e in self.dp_pending[dev] if not e.processed]
        if pending:
            t0 = self.env.now
            yield simpy.AllOf(self.env, pending)
            self._rec(dev, "dp", "wait dp", t0)
        yield from self._compute(dev, plan.optimizer_s[c.pp], "opt", "optimizer", -1, -1)
        self.done_at[dev] = self.env.now

    def _send_local(self, key: Hashable) -> None:
        self.send_start[key] = self.env.now
        self.sender[key] = key[1]
        self._event(key).succeed()

    def run(self) -> list[Record]:
        self._deferred: dict[int, float] = defaultdict(float)
        self._w_count: dict[tuple[int, int], int] = defaultdict(int)
        self.prepare()
        for dev in self.plan.simulated:
            self.env.process(self.device(dev))
        self.env.run()
        missing = [d for d in self.plan.simulated if d not in self.done_at]
        if missing:
            raise RuntimeError(f"simulation stalled: devices {missing[:8]} never finished (schedule deadlock?)")
        return self.records
