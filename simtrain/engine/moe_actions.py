"""The engine's mixture-of-experts path: a stage with MoE layers runs its layers one by one,
each MoE layer's MLP block as [pre] dispatch [experts] combine [post] with the expert-
parallel all-to-alls as flows on the network (simtrain.network.alltoall), recorded as
`ep` while the main stream waits for them ("exposed EP comm"). The backward runs the
block in reverse with the gradient exchanges (combine's, then dispatch's). Expert weight
gradients are reduced over the expert-data-parallel group ("edp"), the rest over DP.
With TP, a layer's attention block (and a dense layer's MLP block) runs its collectives
as the dense path does (the backward's reduce-scatter or all-reduce beside the weight
gradient of the block's first linear, under async TP); an MoE block runs a TP pair only
with shared experts or expert TP (MoECost.tp_block).

Inside an overlapped pair of a DualPipe schedule (`F&B`: a forward and a backward chunk of
two micro-batches run together) the all-to-alls go to the communication stream: they
run alongside the pair's compute and the pair ends when both its compute and its
exchanges are done, which is DualPipe's design (DeepSeek-V3 §3.2.1: "both all-to-all and
PP communication can be fully hidden"). Data dependences inside the pair are not kept
(an approximation that is exact when the exchanges are shorter than the other chunk's
compute, as DualPipe arranges).
"""

from __future__ import annotations

from collections import defaultdict

import simpy

from simtrain.engine.plan import StageWork
from simtrain.engine.primitives import Proc
from simtrain.engine.program import Programs
from simtrain.network.alltoall import dispatch_bytes
from simtrain.schedule import Action


class MoEActions(Programs):
    """Forward, backward and weight-gradient actions of stages with MoE layers."""

    def _moe_init(self) -> None:
        self.pair_open: set[int] = set()  # devices inside an overlapped F&B pair
        self.ep_inflight: dict[int, list[simpy.Event]] = defaultdict(list)
        self._a2a: dict = {}
        self._edeferred: dict[int, float] = defaultdict(float)
        self.node_limit = self.plan.scenario.parallel.ep_node_limit
        self.overlap_ep = self.plan.scenario.engine.overlap_ep_comm

    def _a2a_phase(self, dev: int, st: StageWork, token_bytes: float, reverse: bool):
        v = self._view("ep", dev)  # the EP group as a class (simtrain.engine.symmetry)
        key = (v.group, st.moe.tokens, token_bytes, reverse, st.moe.shares)
        ph = self._a2a.get(key)
        if ph is None:
            mc = st.moe
            flows = dispatch_bytes(v.group, self.plan.topology, mc.tokens, token_bytes, mc.k, mc.experts, mc.shares,
                                   self.node_limit)
            if reverse:  # the combine: the same copies travel back
                flows = {(d, s): b for (s, d), b in flows.items()}
            ph = self._a2a[key] = self.comm.flows(key, flows, v.copies)
        return v, ph

    def _exchange(self, dev: int, v, ph) -> simpy.Event:
        """Start one all-to-all; when the EP group spans several classes, when the last of
        their representatives arrives (every member, in per-rank mode)."""
        if len(v.reps) > 1:
            sk = (dev, v.key)
            k = ("ep", v.key, self.seq[sk])
            self.seq[sk] += 1
            ev, last = self._arrive(k, len(v.reps))
            if last:
                self.net.transfer(ph.key, ph.nbytes, ph.latency).callbacks.append(lambda _e, ev=ev: ev.succeed())
            return ev
        return self.net.transfer(ph.key, ph.nbytes, ph.latency)

    def _ep(self, dev: int, st: StageWork, token_bytes: float, reverse: bool, label: str, stage: int, mb: int) -> Proc:
        """A dispatch (reverse=False) or combine of `dev`'s EP group."""
        if self.free or len(self._view("ep", dev).group) == 1 or st.moe.tokens <= 0:
            return
        v, ph = self._a2a_phase(dev, st, token_bytes, reverse)
        ev = self._exchange(dev, v, ph)
        if dev in self.pair_open:  # DualPipe: hidden behind the pair's compute
            self.ep_inflight[dev].append(ev)
            if self.ep_sms and self.sm_loads is not None:  # the dispatcher's SMs meanwhile (smload)
                self._sm_hold_until(dev, self.ep_sms, ev)
            return
        t0 = self.env.now
        yield ev
        self._rec(dev, "ep", label, t0, stage, mb)

    def _pair_end(self, dev: int) -> Proc:
        """The end of an overlapped pair: wait for the exchanges it started."""
        self.pair_open.discard(dev)
        pending = [e for e in self.ep_inflight.pop(dev, []) if not e.processed]
        if pending:
            t0 = self.env.now
            yield simpy.AllOf(self.env, pending)
            self._rec(dev, "ep", "all-to-all(ep)", t0)

    def moe_forward(self, dev: int, st: StageWork, a: Action, kind: str = "F") -> Proc:
        lab = self._label(a) if kind == "F" else f"R{a.microbatch}"
        mb, mc = a.microbatch, st.moe
        yield from self._compute(dev, st.embed.fwd if (st.embed and kind == "F") else 0.0, kind, lab, st.index, mb)
        for i in range(st.layers):
            lc = st.dense if i < st.dense_layers else st.layer
            yield from self._compute(dev, lc.fwd[0], kind, lab, st.index, mb)
            yield from self._tp(dev, 0.0, lab, st.index, mb)
            if i < st.dense_layers:
                yield from self._compute(dev, lc.fwd[1], kind, lab, st.index, mb)
            else:
                yield from self._compute(dev, mc.pre_fwd, kind, lab, st.index, mb)
                yield from self._ep(dev, st, mc.dispatch_token_bytes, False, "dispatch(ep)", st.index, mb)
                yield from self._compute(dev, mc.experts_fwd, kind, lab, st.index, mb)
                yield from self._ep(dev, st, mc.token_bytes, True, "combine(ep)", st.index, mb)
                yield from self._compute(dev, mc.post_fwd, kind, lab, st.index, mb)
            if i < st.dense_layers or mc.tp_block:  # the MLP block's TP pair (MoECost.tp_block)
                yield from self._tp(dev, 0.0, lab, st.index, mb)
        yield from self._compute(dev, st.head.fwd if (st.head and kind == "F") else 0.0, kind, lab, st.index, mb)

    def _layer_grads(self, dev: int, st: StageWork, i: int, pending: float) -> float:
        """Gradients of layer i are complete: dense ones join the DP buckets, experts' go to EDP."""
        if i < st.dense_layers:
            return self._grad_ready(dev, pending + st.dense_grad_bytes_per_layer)
        self._edp_ready(dev, st.expert_grad_bytes_per_layer)
        return self._grad_ready(dev, pending + st.grad_bytes_per_layer)

    def moe_backward(self, dev: int, st: StageWork, a: Action, with_weight: bool, last: bool) -> Proc:
        lab, mb, mc = self._label(a), a.microbatch, st.moe
        if st.head:
            yield from self._compute(dev, st.head.bwd_input + (st.head.bwd_weight if with_weight else 0.0), "B", lab, st.index, mb)
        pending = 0.0
        for i in reversed(range(st.layers)):
            lc = st.dense if i < st.dense_layers else st.layer
            # (serial, beside) weight-gradient seconds of the MLP and attention blocks (as the
            # dense backward: simtrain.engine.spans._block_wgrads, LayerCost.wgrad_parts)
            mlp_w, attn_w = self._block_wgrads(lc, with_weight)
            if i < st.dense_layers:
                yield from self._block_backward(dev, lc.bwd_input[1] + mlp_w[0], mlp_w[1], lab, st.index, mb)
            else:
                yield from self._compute(dev, mc.post_bwd, "B", lab, st.index, mb)
                yield from self._ep(dev, st, mc.token_bytes, False, "combine grad(ep)", st.index, mb)
                yield from self._compute(dev, mc.experts_bwd + (mc.wgrad if with_weight else 0.0), "B", lab, st.index, mb)
                yield from self._ep(dev, st, mc.token_bytes, True, "dispatch grad(ep)", st.index, mb)
                yield from self._compute(dev, mc.pre_bwd, "B", lab, st.index, mb)
                if mc.tp_block:  # the MLP block's TP pair (MoECost.tp_block)
                    yield from self._tp(dev, 0.0, lab, st.index, mb)
            yield from self._block_backward(dev, lc.bwd_input[0] + attn_w[0], attn_w[1], lab, st.index, mb)
            if last:
                pending = self._layer_grads(dev, st, i, pending)
        if st.embed:
            yield from self._compute(dev, st.embed.bwd_weight if with_weight else 0.0, "B", lab, st.index, mb)
        if last:
            self._grad_ready(dev, pending + st.end_grad_bytes, flush=True)
            self._edp_ready(dev, 0.0, flush=True)

    def _block_backward(self, dev: int, compute: float, beside: float, lab: str, stage: int, mb: int) -> Proc:
        """A dense block's backward with its TP collectives, as the dense path runs them: with
        sequence parallelism the output gradient's all-gather first (exposed), the block's
        GEMMs, then the input gradient's reduce-scatter beside `beside` seconds of weight
        gradient (async TP backward); without, the all-reduce beside it."""
        if self.sp:
            yield from self._tp(dev, 0.0, lab, stage, mb, op="all-gather")
            yield from self._compute(dev, compute, "B", lab, stage, mb)
            yield from self._tp(dev, beside, lab, stage, mb, op="reduce-scatter")
        else:
            yield from self._compute(dev, compute, "B", lab, stage, mb)
            yield from self._tp(dev, beside, lab, stage, mb)

    def moe_weight(self, dev: int, st: StageWork, a: Action, last: bool) -> Proc:
        lab = self._label(a)
        extra = (st.head.bwd_weight if st.head else 0.0) + (st.embed.bwd_weight if st.embed else 0.0)
        pending = 0.0
        for i in reversed(range(st.layers)):
            lc = st.dense if i < st.dense_layers else st.layer
            yield from self._compute(dev, lc.bwd_weight, "W", lab, st.index, a.microbatch)
            if last:
                pending = self._layer_grads(dev, st, i, pending)
        yield from self._compute(dev, extra, "W", lab, st.index, a.microbatch)
        if last:
            self._grad_ready(dev, pending + st.end_grad_bytes, flush=True)
            self._edp_ready(dev, 0.0, flush=True)

    def _moe_prepare(self, dev: int, mine) -> None:
        """Register `dev`'s all-to-alls and expert-gradient collectives before the run (a
        periodic network must know every bundle: simtrain.network.periodic)."""
        moe = [st for st in mine if st.moe is not None]
        if not moe:
            return
        if len(self._view("ep", dev).group) > 1:
            for st in moe:
                if st.moe.tokens > 0 and st.layers > st.dense_layers:
                    for tb, rev in ((st.moe.dispatch_token_bytes, False), (st.moe.token_bytes, True), (st.moe.token_bytes, False)):
                        self._a2a_phase(dev, st, tb, rev)
        v = self._view("edp", dev)
        op = "all-reduce" if self.zero == 0 else "reduce-scatter"
        sizes: dict[str, set[float]] = {op: set()}
        if not self.overlap_grad:
            sizes[op].add(sum((st.layers - st.dense_layers) * st.expert_grad_bytes_per_layer for st in moe))
        else:
            for st in moe:
                pending = 0.0
                for _ in range(st.layers - st.dense_layers):
                    pending += st.expert_grad_bytes_per_layer
                    if pending >= self.bucket_bytes:
                        sizes[op].add(pending)
                        pending = 0.0
                sizes[op].add(pending)
        if self.zero >= 1 and self.plan.layout.dp * self.plan.layout.cp > 1:
            sizes["all-gather"] = {st.expert_params * 2 for st in moe}
        for o, xs in sizes.items():
            self.comm.prepare(o, v.group, v.copies, sorted(x for x in xs if x > 0))

    # ---- expert weights: their gradients and parameters live on the edp group ---------------

    def _edp_ready(self, dev: int, nbytes: float, flush: bool = False) -> None:
        """Expert gradient bytes complete; reduce over EDP in buckets like the DP ones."""
        self._edeferred[dev] += nbytes
        if not self.overlap_grad:
            self._bucket_passes(dev, nbytes)  # (its passes before the reduction after the backward)
            return  # reduced after the backward pass (Engine.device), as the DP gradients
        if self._edeferred[dev] >= self.bucket_bytes or (flush and self._edeferred[dev] > 0):
            op = "all-reduce" if self.zero == 0 else "reduce-scatter"
            delay = self._bucket_passes(dev, self._edeferred[dev])
            self._edp_launch(dev, op, self._edeferred[dev], f"{op}(edp)", delay)
            self._edeferred[dev] = 0.0

    def _edp_launch(self, dev: int, op: str, size: float, label: str, delay: float = 0.0) -> simpy.Event:
        """A collective over the EDP group on the DP stream (after what is queued there, and
        no sooner than `delay` from now)."""
        prev = self.dp_tail.get(dev)
        done = self.env.event()

        def proc() -> Proc:
            if delay > 0:
                yield self.env.timeout(delay)
            if prev is not None and not prev.processed:
                yield prev
            t0 = self.env.now
            if self.sm_loads is not None:
                self._sm_hold(dev, "edp")
            yield from self.collective(dev, "edp", op, size)
            if self.sm_loads is not None:
                self._sm_release(dev, "edp")
            self._rec(dev, "dp", label, t0, stream="comm")
            done.succeed()

        self.env.process(proc())
        self.dp_tail[dev] = done
        self.dp_pending[dev].append(done)
        return done
