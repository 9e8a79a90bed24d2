"""DeepSpeed v0.3.x's ZeRO-3 on a simulated device (stack.zero3_fetch_sync): every parameter
tensor gathered by its own call when its sub-module starts, with the device drained first,
instead of torch FSDP's layer gathers prefetched a layer ahead (simtrain.engine.dpstream).

What DeepSpeed v0.3.13 does at each sub-module's pre-forward / pre-backward hook
(deepspeed/runtime/zero/stage3.py and partition_parameters.py; simtrain.workload.zero3):
1. `fetch_sub_module`: a tensor not gathered yet is gathered now (`_allgather_param`: the
   Python loop over the ranks, `all_gather`, the backend's copy-backs) and waited for, and a
   prefetched one is waited for; `_synchronize_communication` then drains the device
   (`torch.cuda.synchronize()`), so the previous sub-module's kernels, its gathers and any
   gradient reduce-scatter in flight all end before this sub-module's kernels are launched.
2. `prefetch_next_sub_modules`: while fewer than stage3_max_live_parameters elements are
   gathered, the next tensor's gather is launched (its host loop runs now, the GPU idle);
   it overlaps this sub-module's compute only.
3. the sub-module's kernels; in the backward, its weight's gradient hook then launches the
   previous gradient's reduce-scatter (`reduce_ipg_grads`: every tensor of these models is
   over reduce_bucket_size, so each is reduced alone when the next gradient arrives), whose
   host loop and collective overlap this sub-module's backward only; the last gradient's is
   reduced in the epilogue (`independent_gradient_partition_epilogue`), the device idle.
PyTorch 1.8's all_gather into a list (ProcessGroupNCCL::allgather) copies the gathered flat
buffer back one copy_ per rank on the collective's stream, after it: the gather ends when
the last copy has run. Each tensor's sub-module is given its GEMM's share (numel) of the segment's compute; the
tensor-parallel collectives stay at the segments' ends, exposed. The engine runs the
stage's recomputation before its backward (as for every stack): the reduce-scatter that
DeepSpeed's recomputed forward would wait for is waited for by the next backward fetch.
"""

from __future__ import annotations

import math
from typing import Generator

import simpy

from simtrain.engine.plan import StageWork
from simtrain.schedule import Action
from simtrain.workload import zero3 as Z3
from simtrain.workload.compute import memory_time

Proc = Generator[simpy.Event, object, None]
PARAM_BYTES = 2.0  # fp16 / bf16: DeepSpeed gathers parameters and reduces gradients in their dtype


class Zero3Sync:
    def _z3_init(self, plan) -> None:
        s = plan.scenario
        self.z3: tuple[Z3.Fetch, ...] = ()
        if self.fsdp and Z3.sync(s.parallel, s.stack) and all(st.moe is None and st.layer.cp_bytes <= 0
                                                              for st in plan.stages):
            self.z3 = Z3.fetch_plan(s.model, s.parallel, s.stack)
            self.z3_host = Z3.gather_host_seconds(s.parallel, s.stack)  # (before, after) the call
            self.z3_rs_host = Z3.host_seconds(s.parallel, s.stack, 0, 1)
            self.z3_ranks, self.z3_launch_s = s.parallel.dp * s.parallel.cp, s.stack.launch_us * 1e-6
            self.z3_segs = {seg: [i for i, t in enumerate(self.z3) if t.seg == seg] for seg in (0, 1)}

    def _z3_sizes(self) -> set[float]:
        return {t.numel * PARAM_BYTES for t in self.z3}

    def _z3_gather(self, dev: int, t: Z3.Fetch, kind: str, lab: str, stage: int, mb: int) -> Proc:
        """Launch one tensor's gather: its buffer zeroed and the host loop before the call
        (the GPU waits), the
        collective on the DP stream, the backend's copy-backs launched beside it (one per
        rank, `launch_us` apart). They run on the collective's stream once it ends: the
        gather is done when the last has run, at max(the host's last launch, the
        collective's end + the copies launched by then x each copy's GPU time)."""
        before, after = self.z3_host
        # the gathered buffer zeroed (torch.zeros), then torch.cuda.synchronize() before the
        # loop (partition_parameters.py:607-611): the memset's time is the host's wait too
        yield from self._compute(dev, memory_time(self.plan.device, t.numel * PARAM_BYTES) + before, kind, lab,
                                 stage, mb)
        env, t1 = self.env, self.env._now
        ag = self._dp_launch(dev, "all-gather", t.numel * PARAM_BYTES, "all-gather(zero3)")
        done = env.event()
        ranks, gap = self.z3_ranks, self.z3_launch_s
        # read + write one rank's part (DeepSpeed pads the tensor to a multiple of the ranks)
        one = memory_time(self.plan.device, 2 * PARAM_BYTES * math.ceil(t.numel / ranks))

        def copied(_e: object = None) -> None:
            ta = env._now
            queued = min(ranks, (ta - t1) / gap) if gap > 0 else ranks
            env.timeout(max(t1 + after, ta + queued * one) - ta).callbacks.append(lambda _e: done.succeed())

        if ag.callbacks is None:
            copied()
        else:
            ag.callbacks.append(copied)
        self.dp_tail[dev] = done  # (the copies hold the collectives' stream)
        self.dp_pending[dev].append(done)
        yield from self._compute(dev, after, kind, lab, stage, mb)
        return done

    def _z3_fetch(self, dev: int, k: int, t: Z3.Fetch, ready: tuple | None, kind: str, lab: str, stage: int,
                  mb: int) -> Proc:
        """Step k's tensor ready on the device: its prefetched gather waited for, or gathered now."""
        if ready is not None and ready[0] == k:
            ev = ready[1]
        else:
            ev = yield from self._z3_gather(dev, t, kind, lab, stage, mb)
        yield from self._wait_gather(dev, ev, stage, mb)

    def _z3_prefetch(self, dev: int, steps: list, need: list, k: int, ready: tuple | None, kind: str, lab: str,
                     stage: int, mb: int) -> Proc:
        """At step k's fetch: launch the gather of the next step that needs one (none past the
        stage's layers), unless it is in flight already. Returns the (step, event) in flight."""
        j = next((j for j in range(k + 1, len(steps)) if need[j]), None)
        if j is None or (ready is not None and ready[0] == j):
            return ready
        ev = yield from self._z3_gather(dev, self.z3[steps[j]], kind, lab, stage, mb)
        return (j, ev)

    def _z3_forward(self, dev: int, st: StageWork, a: Action, kind: str) -> Proc:
        lc, T, s, mb = st.layer, self.z3, st.index, a.microbatch
        lab = self._label(a) if kind == "F" else f"R{mb}"
        p = 0 if kind == "F" else 1
        yield from self._compute(dev, st.embed.fwd if (st.embed and kind == "F") else 0.0, kind, lab, s, mb)
        steps = [i for _ in range(st.layers) for seg in (0, 1) for i in self.z3_segs[seg]]
        need = [True] * len(steps)
        ready, k = None, 0
        for _ in range(st.layers):
            for seg in (0, 1):
                if not self.z3_segs[seg]:
                    yield from self._compute(dev, lc.fwd[seg], kind, lab, s, mb)
                for i in self.z3_segs[seg]:
                    yield from self._z3_fetch(dev, k, T[i], ready, kind, lab, s, mb)
                    if T[i].prefetch[p]:
                        ready = yield from self._z3_prefetch(dev, steps, need, k, ready, kind, lab, s, mb)
                    yield from self._compute(dev, T[i].share * lc.fwd[seg], kind, lab, s, mb)
                    k += 1
                yield from self._tp(dev, 0.0, lab, s, mb)
        yield from self._compute(dev, st.head.fwd if (st.head and kind == "F") else 0.0, kind, lab, s, mb)

    def _z3_backward(self, dev: int, st: StageWork, a: Action, with_weight: bool, last: bool) -> Proc:
        lc, T, s, mb, lab = st.layer, self.z3, st.index, a.microbatch, self._label(a)
        # each block's own weight gradient (LayerCost.wgrad_parts: attention, MLP), nothing
        # runs beside this path's TP collectives
        wgs = tuple(sum(p) for p in lc.wgrad_parts()) if with_weight else (0.0, 0.0)
        if st.head:
            yield from self._compute(dev, st.head.bwd_input + (st.head.bwd_weight if with_weight else 0.0), "B", lab, s, mb)
        steps = [i for _ in range(st.layers) for seg in (1, 0) for i in reversed(self.z3_segs[seg])]
        need = [not T[i].kept for i in steps]
        ready, pending, owed, k = None, None, None, 0
        for _ in range(st.layers):
            for seg in (1, 0):
                if self.sp:
                    yield from self._tp(dev, 0.0, lab, s, mb, "all-gather")
                if not self.z3_segs[seg]:
                    yield from self._compute(dev, lc.bwd_input[seg] + wgs[seg], "B", lab, s, mb)
                for i in reversed(self.z3_segs[seg]):
                    if pending is not None:  # the device drained: the last reduce-scatter done
                        yield from self._z3_wait_grads(dev, pending, s, mb)
                        pending = None
                    if need[k]:
                        yield from self._z3_fetch(dev, k, T[i], ready, "B", lab, s, mb)
                    if T[i].prefetch[2]:
                        ready = yield from self._z3_prefetch(dev, steps, need, k, ready, "B", lab, s, mb)
                    if owed is not None:  # this gradient's hook reduces the previous one
                        pending = self._dp_launch(dev, "reduce-scatter", owed.numel * PARAM_BYTES,
                                                  "reduce-scatter(zero3)", delay=self.z3_rs_host)
                    owed = T[i] if with_weight else None
                    yield from self._compute(dev, T[i].share * (lc.bwd_input[seg] + wgs[seg]), "B", lab, s, mb)
                    k += 1
                yield from self._tp(dev, 0.0, lab, s, mb, "reduce-scatter" if self.sp else "all-reduce")
        if pending is not None:
            yield from self._z3_wait_grads(dev, pending, s, mb)
        if owed is not None:  # the epilogue reduces the last gradient, the device idle meanwhile
            yield from self._compute(dev, self.z3_rs_host, "B", lab, s, mb)
            ev = self._dp_launch(dev, "reduce-scatter", owed.numel * PARAM_BYTES, "reduce-scatter(zero3)")
            yield from self._z3_wait_grads(dev, ev, s, mb)
        if st.embed:
            yield from self._compute(dev, st.embed.bwd_weight if with_weight else 0.0, "B", lab, s, mb)
        if last:
            self._grad_ready(dev, st.end_grad_bytes, flush=True)

    def _z3_wait_grads(self, dev: int, ev: simpy.Event, stage: int, mb: int) -> Proc:
        if not ev.processed:
            t0 = self.env._now
            yield ev
            self._rec(dev, "dp", "wait grads", t0, stage, mb)
