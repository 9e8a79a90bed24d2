"""The simpy engine: runs the plan's per-rank action lists over the flow network.

One simpy process per simulated device walks its pipeline rank's action list in order:
- F: wait for the activation from the previous virtual stage (point-to-point transfer along
  the topology), run the stage's layers (compute segments separated by TP collectives),
  send the activation on.
- B: wait for the gradient from the next virtual stage, recompute if configured, run the
  layers backwards; Megatron overlaps each TP all-reduce of input gradients with the
  weight-gradient GEMMs, so only the excess is exposed. Send the gradient back. During a
  stage's last backward its gradients are reduced over the DP group in buckets on a separate
  stream, overlapped with the remaining backward work.
- W (zero-bubble schedules): the weight-gradient GEMMs alone.
Then wait for the DP reductions, run the optimizer. With a distributed optimizer the updated
parameters are all-gathered on the DP stream at the start of the (next) step, overlapped
with the forward pass until a chunk's first forward needs them (ZeRO-3 of 2021: zero3sync). Every interval of a device's main stream is recorded as compute
(F, B, W, R, opt) or as a wait (tp, pp, dp, bubble): a wait for a pipeline neighbour counts
as `pp` while the neighbour's transfer is in flight and as `bubble` before it has started.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Hashable

import simpy

from simtrain.engine.gcpause import paused_gc
from simtrain.engine.loop import Arrivals, drain, drain_reporting
from simtrain.engine.moe_actions import MoEActions
from simtrain.engine.dspipe import PIPE_COPIES, DeepSpeedPipe
from simtrain.engine.gradwork import bucket_params, grad_accum_seconds, grad_buffer_passes
from simtrain.engine.plan import Plan, StageWork
from simtrain.engine.primitives import Proc
from simtrain.engine.steps import engine_walk
from simtrain.engine.symmetry import periodic_network
from simtrain.engine.timeline import Record
from simtrain.engine.zero3sync import Zero3Sync
from simtrain.network.comm import Comm
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.layout import Coord
from simtrain.schedule import Action


PROGRESS_EVERY = 50_000  # events between progress reports


class Engine(MoEActions, DeepSpeedPipe, Zero3Sync):
    """Walks each simulated device's action list (forward, backward, weight) on top of the
    primitives in `simtrain.engine.primitives`; `run()` returns the flat timeline records."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.env = simpy.Environment()
        eng = plan.scenario.engine
        self.net = FlowNetwork(self.env, plan.topology, free=eng.comm == "free")
        self.periodic = periodic_network(plan)
        self.comm = Comm(self.net, plan.topology, eng.collective_algo, plan.scenario.stack.collective_us * 1e-6,
                         self.periodic, ring_ops=plan.scenario.stack.ring_gather_scatter)
        self.comm.alone = plan.classes.kind != "pipeline"
        self.records: list[Record] = []
        self.arrivals: dict[Hashable, simpy.Event] = {}
        self.arrived = Arrivals(self.env)  # (succeeds them: simtrain.engine.loop)
        self.sent_from: dict[Hashable, tuple[float, int]] = {}  # arrival -> (its send's start, the sender)
        self.dp_tail: dict[int, simpy.Event] = {}
        self.dp_pending: dict[int, list[simpy.Event]] = defaultdict(list)
        self.param_ready: dict[tuple[int, int], simpy.Event] = {}
        self.rdv: dict[Hashable, list] = {}
        self.seq: dict[Hashable, int] = defaultdict(int)
        self.classes = plan.classes
        self._neighbours: dict[tuple[int, int], tuple[int, int]] = {}
        self.done_at: dict[int, float] = {}
        L = plan.layout
        self.S = L.pp * L.vp
        self.m = L.microbatches
        par = plan.scenario.parallel
        self.zero = par.zero
        self.bucket_bytes = bucket_params(L.dp) * plan.grad_bytes  # Megatron DDP default bucket
        self.overlap_grad = par.overlap_grad_reduce
        self.overlap_tp = plan.scenario.engine.overlap_tp_comm
        self.async_tp = plan.scenario.engine.async_tp_backward
        # Sequence parallelism changes the backward's TP traffic (Korthikanti et al. 2022
        # §4.2.2; Megatron-LM's LinearWithGradAccumulationAndAsyncCommunication): the
        # row-parallel linear's backward must all-gather its sequence-sharded output gradient
        # before any GEMM can start (exposed), and the column-parallel linear reduce-scatters
        # its input gradient alongside the weight-gradient GEMM (without SP, one all-reduce).
        self.sp = plan.scenario.parallel.sequence_parallel and plan.layout.tp > 1
        self.tp_split: dict[int, tuple[float, float]] = {}  # coalesced SP: (all-gather, reduce-scatter) s
        self.async_p2p = plan.scenario.engine.async_p2p
        # The software stack's DP gradient path (simtrain.scenario.stack: dp_reduce_bf16,
        # param_gather, grad_accum_bytes*), e.g. DeepSpeed's pipeline engine of 2021-2022
        stack, bf16 = plan.scenario.stack, plan.scenario.training.precision == "bf16"
        self.grad_op = ("all-reduce" if self.zero == 0 or (bf16 and stack.dp_reduce_bf16 == "all-reduce")
                        else "reduce-scatter")
        self.gather_in_step = stack.param_gather == "in-step"
        self.accum_s, self.accum_first = grad_accum_seconds(plan)
        self._ds_pipe_init(plan)  # DeepSpeed's pipeline-engine extras (simtrain.engine.dspipe)
        self.grad_passes = grad_buffer_passes(plan)  # the stack's gradient-buffer passes (dpstream)
        self.full_recompute = par.recompute == "full"
        self.jitter = plan.scenario.whatif.compute_jitter > 0
        self.varied = bool(plan.speed) or self.jitter
        self.free = self.net.free
        self._phases: dict[Hashable, list] = {}
        self._solo: dict[Hashable, bool] = {}  # collective -> runs on links of its own (primitives)
        self._coords: dict[int, Coord] = {}
        self.tp_time: dict[int, float] = {}  # exact TP all-reduce time where coalescing applies
        detail = plan.scenario.engine.detail
        self.coarse = detail == "action" or (detail == "auto" and len(plan.simulated) > 512)
        self._labels: dict[int, str] = {}  # id of an Action of the schedule (kept alive by it) -> label
        self._wait_labels: dict[str, tuple[str, str]] = {}  # "F3" -> ("wait F3", "recv F3")
        self._send_labels: dict[tuple[str, int], str] = {}  # ("F", 3) -> "send F3"
        self._tp_views: dict[int, object] = {}  # (simtrain.engine.spans)
        self._seg_cache: dict[Hashable, tuple] = {}
        self._programs: dict[Hashable, object] = {}  # (simtrain.engine.program)
        # critical-path bookkeeping: which wait ended because of whom
        # device -> {end of a wait: (whom it waited for, when)}: a dict per device (one dict of
        # (device, time) keys grows to millions in per-rank runs: slower to fill)
        self.waited_on: dict[int, dict[float, tuple[int, float]]] = defaultdict(dict)
        self.last_arrival: dict[Hashable, int] = {}
        self.dp_dim = "dpcp" if L.cp > 1 else "dp"
        self.cp_ring = par.cp_algo == "ring"
        # torch-style FSDP: per-layer parameter all-gather in forward and backward and a per-
        # micro-batch gradient reduce-scatter; Llama 3's variant (parameters kept after the
        # forward) communicates like the distributed optimizer (zero = 1). DeepSpeed v0.3.x:
        # per-tensor synchronized fetches instead (simtrain.engine.zero3sync)
        self.fsdp = par.zero == 3 and par.reshard_after_forward and L.dp * L.cp > 1
        self._sm_init(plan)  # NCCL's blocks on the SMs beside data-parallel collectives (smload)
        self._z3_init(plan)
        self._moe_init()

    # ---- helpers ------------------------------------------------------------------------
    def _label(self, a: Action) -> str:
        lab = self._labels.get(id(a))  # (by identity: an Action hashes its fields in Python)
        if lab is None:  # one string object per action, shared by all its records
            lab = self._labels[id(a)] = repr(a) if self.plan.layout.vp > 1 else f"{a.kind}{a.microbatch}"
        return lab

    def forward(self, dev: int, st: StageWork, a: Action, kind: str = "F") -> Proc:
        if st.moe is not None or self.z3:  # mixture of experts (moe_actions), DeepSpeed v0.3.x ZeRO-3 (zero3sync)
            yield from (self.moe_forward if st.moe is not None else self._z3_forward)(dev, st, a, kind)
            return
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
            # (the action by identity: a pipeline rank's devices walk the same Action objects)
            yield from self._group_segments(dev, (kind, id(a)), self._forward_segs(st, kind, tpt), lab, st.index, mb)
            return
        if not self.fsdp and self._programs_on():
            prog = self._forward_program(dev, st, kind)
            if prog is not None:
                yield from self._run_program(dev, prog, lab, st.index, mb)
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

    def _fast(self, lc) -> bool:
        """No collective inside the layers: run a whole action as one compute span."""
        return self.free or ((lc.tp_bytes <= 0 or self.overlap_tp) and lc.cp_bytes <= 0)

    def backward(self, dev: int, st: StageWork, a: Action, with_weight: bool, last: bool) -> Proc:
        """Input-gradient (and weight-gradient unless split) backward of one micro-batch.
        `last`: the stage's final backward, during which its gradients become ready."""
        if st.moe is not None or self.z3:  # (moe_actions, zero3sync)
            yield from (self.moe_backward if st.moe is not None else self._z3_backward)(dev, st, a, with_weight, last)
            return
        lab = self._label(a)
        lc, mb = st.layer, a.microbatch
        pending = 0.0
        tpt = self.tp_time.get(dev)
        if (not self._fast(lc) and tpt is None and not self.fsdp and not (last and self.overlap_grad)
                and self._programs_on()):
            prog = self._backward_program(dev, st, with_weight)
            if prog is not None:
                yield from self._run_program(dev, prog, lab, st.index, mb)
                if last:
                    for _ in range(st.layers):
                        pending = self._grad_ready(dev, pending + st.grad_bytes_per_layer)
                    self._grad_ready(dev, pending + st.end_grad_bytes, flush=True)
                return
        if st.head:
            yield from self._compute(dev, st.head.bwd_input + (st.head.bwd_weight if with_weight else 0.0), "B", lab, st.index, mb)
        if self._fast(lc) and not (last and self.overlap_grad) and not self.fsdp:
            yield from self._compute(dev, st.layers * (sum(lc.bwd_input) + (lc.bwd_weight if with_weight else 0.0)),
                                     "B", lab, st.index, mb)
            pending = st.layers * st.grad_bytes_per_layer if last else 0.0
        elif tpt is not None and not (last and self.overlap_grad and self._fast(lc)):
            by_layer = last and self.overlap_grad  # gradient buckets fill as each layer ends
            segs = self._backward_segs(dev, st, tpt, with_weight, by_layer)
            if by_layer:  # one span per layer (not one per collective and compute piece)
                yield from self._tp_sync(dev, ("B", id(a)), cause=False)
                for _ in range(st.layers):
                    yield from self._segments(dev, segs, lab, st.index, mb)
                    pending = self._grad_ready(dev, pending + st.grad_bytes_per_layer)
            else:
                yield from self._group_segments(dev, ("B", id(a)), segs, lab, st.index, mb)
                pending = st.layers * st.grad_bytes_per_layer if last else 0.0
        else:
            gather = self._fsdp_gathers(dev, st) if self.fsdp else None
            blocks = self._block_wgrads(lc, with_weight)  # (MLP block, then attention)
            for _ in range(st.layers):
                if gather is not None:
                    yield from self._wait_gather(dev, next(gather), st.index, mb)
                for i, seg in enumerate((lc.bwd_input[1], lc.bwd_input[0])):
                    ser, hid = blocks[i]
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
        if st.moe is not None:
            yield from self.moe_weight(dev, st, a, last)
            return
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

    def device(self, dev: int) -> Proc:
        plan = self.plan
        c = self._coord(dev)
        m = plan.schedule.stage_microbatches  # micro-batches through each stage (M / chains)
        yield from self._step_start(dev, c.pp)  # parameter all-gathers, gradient buffer zeroed
        arrivals, async_p2p, env = self.arrivals, self.async_p2p, self.env
        busy = self.records.busy if self.sm_loads is not None else None  # (smload: compute NCCL's SMs slowed)
        tpt = self.tp_time.get(dev)
        tpv = self._view("tp", dev) if tpt is not None else None  # (made by _plan_coalescing, which set tpt)
        group = tpv is not None and len(tpv.reps) > 1 and not self.varied  # (TP peers: `_group_segments`'s one event)
        walk = self._walks.get((c.pp, tpt))
        if walk is None:  # every device of a pipeline rank walks the same list
            walk = self._walks[(c.pp, tpt)] = engine_walk(self, c.pp, tpt)
        for a, st, stage, mb, kind, wait_label, end, full, pair_open, pair_end, count, first, pw, lab, what, span in walk:
            if pair_open:  # DualPipe's F&B: exchanges hidden behind the pair
                self.pair_open.add(dev)
            if kind == "F":
                if wait_label is not None:
                    key = ("F", dev, stage, mb)
                    ev = arrivals.get(key) or self._event(key)
                    if ev.callbacks is not None:  # (not processed: `_wait` without its generator)
                        t0 = env._now
                        yield ev
                        self._arrived(dev, key, stage, mb, wait_label, t0)
                    else:
                        self._received(key)
                if first:  # (only a stage's first forward finds its parameters' all-gather)
                    ready = self.param_ready.pop((dev, stage), None)
                    if ready is not None and not ready.processed:
                        t0 = env._now
                        yield ready
                        self._rec(dev, "dp", "wait params", t0, stage, mb)
                ta = env._now  # (the action's start: smload)
                if pw is not None:
                    yield from self._unpartition(dev, pw, "F", stage, mb)
                if span:  # (`forward`'s coalesced path, and `_group_segments` where it is one span, without generators)
                    segs = self._forward_segs(st, "F", tpt)
                    if group and segs[1] > 0:
                        entry, t0 = self._span_join(dev, tpv, what, segs[1]), env._now
                        yield entry[1]
                        self._span_left(dev, entry, t0, segs[0], lab, stage, mb)
                    else:
                        yield from self._group_segments(dev, what, segs, lab, stage, mb)
                else:
                    yield from self.forward(dev, st, a)
                if pw is not None:
                    yield from self._compute(dev, pw[2], "F", PIPE_COPIES, stage, mb)
                if busy is not None and dev in busy:
                    yield from self._pay_sm(dev, ta, stage, mb)
                if not end:
                    peer, rep = self._neighbour(dev, stage + 1)
                    if peer == dev:
                        self._send_local(("F", dev, stage + 1, mb))
                    elif async_p2p:
                        self._send(dev, peer, ("F", rep, stage + 1, mb), stage, mb, "F")
                    else:
                        yield from self._send_blocking(dev, peer, ("F", rep, stage + 1, mb), stage, mb, "F")
            elif kind == "B":
                if wait_label is not None:
                    key = ("B", dev, stage, mb)
                    ev = arrivals.get(key) or self._event(key)
                    if ev.callbacks is not None:  # (not processed: `_wait` without its generator)
                        t0 = env._now
                        yield ev
                        self._arrived(dev, key, stage, mb, wait_label, t0)
                    else:
                        self._received(key)
                ta = env._now
                if pw is not None:  # before autograd.backward, so before the recomputation
                    yield from self._unpartition(dev, pw, "B", stage, mb)
                if st.layer.recompute > 0:
                    if self.full_recompute:  # the whole forward again, TP collectives included
                        yield from self.forward(dev, st, a, kind="R")
                    else:  # selective (the attention core, ...) or op-selective with its re-run all-gathers
                        yield from self._selective_recompute(dev, st, stage, mb)
                # a full backward (no W of its own to come) completes the weight gradient
                last = full and count == m
                if span:  # (`backward`'s coalesced path, and `_group_segments` where it is one span, without generators)
                    segs = self._backward_segs(dev, st, tpt, full, False)
                    if group and segs[1] > 0:
                        entry, t0 = self._span_join(dev, tpv, what, segs[1]), env._now
                        yield entry[1]
                        self._span_left(dev, entry, t0, segs[0], lab, stage, mb)
                    else:
                        yield from self._group_segments(dev, what, segs, lab, stage, mb)
                else:
                    yield from self.backward(dev, st, a, with_weight=full, last=last)
                if full and self.accum_s and (self.accum_first or count > 1):
                    yield from self._compute(dev, self.accum_s[st.index], "B", "grad-accum", stage, mb)
                if pw is not None:
                    yield from self._compute(dev, pw[2], "B", PIPE_COPIES, stage, mb)
                if busy is not None and dev in busy:
                    yield from self._pay_sm(dev, ta, stage, mb)
                if not end:
                    peer, rep = self._neighbour(dev, stage - 1)
                    if peer == dev:
                        self._send_local(("B", dev, stage - 1, mb))
                    elif async_p2p:
                        self._send(dev, peer, ("B", rep, stage - 1, mb), stage, mb, "B")
                    else:
                        yield from self._send_blocking(dev, peer, ("B", rep, stage - 1, mb), stage, mb, "B")
                if last:  # (nothing owed otherwise)
                    yield from self._pay_bucket_passes(dev, stage, mb, last)  # (after the send)
            else:  # W
                ta = env._now
                yield from self.weight(dev, st, a, last=count == m)
                yield from self._pay_bucket_passes(dev, stage, mb, count == m)
                if self.accum_s and (self.accum_first or count > 1):
                    yield from self._compute(dev, self.accum_s[st.index], "W", "grad-accum", stage, mb)
                if busy is not None and dev in busy:
                    yield from self._pay_sm(dev, ta, stage, mb)
            if pair_end:
                yield from self._pair_end(dev)
        if self.tied_stages is not None and c.pp in (plan.schedule.placement[i] for i in self.tied_stages):
            yield from self._tied_allreduce(dev, c.pp)
        self._launch_deferred(dev)
        yield from self._wait_dp(dev, "wait dp")
        yield from self._compute(dev, plan.optimizer_s[c.pp], "opt", "optimizer", -1, -1)
        yield from self._step_end(dev, c.pp)  # in-step parameter gathers, the trainer's syncs (dpstream)
        self.done_at[dev] = self.env._now

    def run(self, progress: Callable[[float, int], None] | None = None) -> list[Record]:
        """Simulate the step; `progress(simulated_seconds, events)` every PROGRESS_EVERY events."""
        self._deferred: dict[int, float] = defaultdict(float)
        self._owed: dict[int, float] = defaultdict(float)  # bucket passes not yet run (dpstream._bucket_passes)
        self._walks: dict[tuple[int, float | None], list[tuple]] = {}  # (pipeline rank, TP time) -> engine_walk
        self.prepare()
        for dev in self.plan.simulated:
            self.env.process(self.device(dev))
        t0 = time.perf_counter()
        with paused_gc():  # (millions of short-lived objects: simtrain.engine.gcpause)
            if progress is None:
                drain(self.env)
            else:  # (events processed inside a shared queue entry count one by one)
                drain_reporting(self.env, progress, lambda: self.net.folded + self.arrived.folded, PROGRESS_EVERY)
        self.run_s = time.perf_counter() - t0  # event loop only (benchmarks: engine event rate)
        missing = [d for d in self.plan.simulated if d not in self.done_at]
        if missing:
            raise RuntimeError(f"simulation stalled: devices {missing[:8]} never finished (schedule deadlock?)")
        return self.records
