"""The data-parallel stream of a simulated device: gradient buckets reduced as the last
backward fills them, parameter all-gathers overlapped with the forward (distributed
optimizer), torch FSDP's per-layer traffic; launched one after another on their own
stream. Part of the engine's primitives (simtrain.engine.primitives), which it extends."""

from __future__ import annotations

from typing import Generator

import simpy
from simpy.events import URGENT

from simtrain.engine.plan import StageWork

Proc = Generator[simpy.Event, object, None]
# a host-synchronous bookkeeping collective's payload per rank: one scalar (a loss, a metric
# state), 4 bytes (stack.step_sync_collectives, step_metric_states)
SYNC_BYTES = 4.0


class DataParallelStream:
    def _dp_sizes(self, mine) -> dict[str, set[float]]:
        """Every size of data-parallel collective a device holding stages `mine` will launch
        (gradient buckets as `_grad_ready` fills them, the deferred reduction, parameter
        all-gathers, FSDP's per-layer traffic), so that each size's algorithm is chosen and
        registered before the run and the link classes compile once."""
        plan = self.plan
        grad_op = self.grad_op
        out: dict[str, set[float]] = {grad_op: set()}
        if self.fsdp:
            out["all-gather"] = {st.grad_bytes_per_layer / plan.grad_bytes * 2 for st in mine}
            out["reduce-scatter"] = out.get("reduce-scatter", set()) | {st.grad_bytes_per_layer for st in mine}
            if self.z3:  # DeepSpeed v0.3.x's per-tensor calls (simtrain.engine.zero3sync)
                out["all-gather"] |= self._z3_sizes()
                out["reduce-scatter"] |= self._z3_sizes()
        if not self.overlap_grad:
            total = sum(sum(_layer_grads(st)) + st.end_grad_bytes for st in mine)
            if total > 0:
                out[grad_op].add(total)
        elif self.fsdp:  # layers reduce-scatter as they go; the ends at the flush
            out[grad_op] |= {st.end_grad_bytes for st in mine}
        else:
            for st in mine:
                pending = 0.0
                for g in _layer_grads(st):
                    pending += g
                    if pending >= self.bucket_bytes:
                        out[grad_op].add(pending)
                        pending = 0.0
                if pending + st.end_grad_bytes > 0:
                    out[grad_op].add(pending + st.end_grad_bytes)
        if self.zero >= 1 and not self.fsdp:
            bucket = self.bucket_bytes / plan.grad_bytes
            gathers = out.setdefault("all-gather", set())
            for st in mine:
                dense = st.params - st.expert_params  # an MoE model's experts: over their edp group
                first = min(bucket, dense)
                gathers.add(first * 2)
                if dense > first:
                    gathers.add((dense - first) * 2)
        stack, n = plan.scenario.stack, plan.layout.dp * plan.layout.cp
        if stack.step_sync_collectives or stack.step_metric_states:  # (_step_syncs)
            out.setdefault("all-reduce", set()).add(SYNC_BYTES)
            if stack.step_metric_states:
                out.setdefault("all-gather", set()).add(n * SYNC_BYTES)
        return {op: {x for x in sizes if x > 0} for op, sizes in out.items()}

    def _dp_launch(self, dev: int, op: str, size: float, label: str, on_done: simpy.Event | None = None,
                   delay: float = 0.0) -> simpy.Event:
        """Queue a collective on `dev`'s DP stream: it starts when the previous one is done
        and triggers the returned event when it ends (no sooner than `delay` from now: the
        compute-stream work its bucket waits for). Driven by callbacks where a simpy
        process would resume (`_stream_start`): the same order, without a generator and
        the process's end event (whose number is still drawn, so that the `events` a run
        reports, simpy's event count, stays the same figure as with a process)."""
        prev = self.dp_tail.get(dev)
        done = on_done or self.env.event()
        env = self.env
        loads = self.sm_loads

        def finish(t0: float) -> None:
            if loads is not None:
                self._sm_release(dev, self.dp_dim)
            self._rec(dev, "dp", label, t0, stream="comm", nbytes=size)
            done.succeed()
            next(env._eid)  # (the process's end event, scheduled after `done`: see above)

        def start(_e: object = None) -> None:
            nonlocal start
            if prev is not None and prev.callbacks is not None:  # (not processed yet)
                prev.callbacks.append(start)
                return
            start = None  # (runs once: no reference cycle through its own cell keeps the engine alive)
            t0 = env._now
            if loads is not None:  # NCCL's blocks held from now until the collective ends
                self._sm_hold(dev, self.dp_dim)
            ev = self._launch(dev, self.dp_dim, op, size)
            if ev is not None and ev.callbacks is not None:
                ev.callbacks.append(lambda _e: finish(t0))
            else:
                finish(t0)

        if delay > 0:  # (where a process would wait: a timeout created when it first runs)
            _stream_start(env, lambda _e: env.timeout(delay).callbacks.append(start))
        else:
            _stream_start(env, start)
        self.dp_tail[dev] = done
        self.dp_pending[dev].append(done)
        return done

    def _gathers_params(self) -> bool:
        """ZeRO-1/2: the updated parameters are all-gathered over DP once per step."""
        return self.zero >= 1 and self.plan.layout.dp * self.plan.layout.cp > 1 and not self.free and not self.fsdp

    def _param_gathers(self, dev: int, pp_rank: int, first_ready: bool) -> None:
        """Launch the all-gathers of the parameters this pipeline rank updates (bf16, 2 bytes
        each, or plan.gather_bytes with FP8 weights), one bucket then the rest per chunk. `first_ready`: each chunk's first forward
        waits for its first bucket (Megatron's overlap_param_gather at the step's start);
        otherwise they run inside optimizer.step() (stack.param_gather = "in-step")."""
        plan = self.plan
        bucket = self.bucket_bytes / plan.grad_bytes  # parameters per bucket
        for st in plan.stages:
            if plan.schedule.placement[st.index] == pp_rank:
                dense = st.params - st.expert_params  # experts: over their edp group
                first = min(bucket, dense)
                b = plan.gather_bytes.get(st.index, 2.0)  # bf16, or FP8 linear weights (training.fp8_params)
                ev = self._dp_launch(dev, "all-gather", first * b, "all-gather(dp)")
                if first_ready:
                    self.param_ready[(dev, st.index)] = ev
                if dense > first:
                    self._dp_launch(dev, "all-gather", (dense - first) * b, "all-gather(dp)")
                if st.expert_params > 0:
                    self._edp_launch(dev, "all-gather", st.expert_params * 2, "all-gather(edp)")

    def _step_start(self, dev: int, pp_rank: int) -> Proc:
        """The step's start on `dev`. Distributed optimizer: parameters all-gathered per
        chunk, overlapped with the forward (Megatron's overlap_param_gather): each chunk's
        first bucket must arrive before its first forward; the rest streams in behind it
        while the forward runs. The stack's gradient buffer zeroed on the compute stream
        meanwhile (Megatron's zero_grad_buffer, before optimizer.zero_grad() dispatches the
        first all-gather: training.py@core_r0.8.0:584-586)."""
        if self._gathers_params() and not self.gather_in_step:
            self._param_gathers(dev, pp_rank, first_ready=True)
        if self.grad_passes is not None:
            yield from self._compute(dev, self.grad_passes.zero_s.get(pp_rank, 0.0), "opt", "zero grad buffer", -1, -1)

    def _step_end(self, dev: int, pp_rank: int) -> Proc:
        """After optimizer.step(): the parameter all-gathers of stack.param_gather = "in-step"
        (exposed), then the trainer's per-step syncs (`_step_syncs`)."""
        if self._gathers_params() and self.gather_in_step:  # inside optimizer.step(), exposed
            self._param_gathers(dev, pp_rank, first_ready=False)
            yield from self._wait_dp(dev, "wait params")
        yield from self._step_syncs(dev)

    def _step_syncs(self, dev: int) -> Proc:
        """The trainer's bookkeeping every step (stack.step_sync_collectives,
        step_metric_states; stacks/llm-foundry.toml: Composer's loss and time all-reduces and
        its training metrics' torchmetrics sync), each collective waited for by the host, so
        on the critical path with the device drained. A metric state: the barrier, one
        zeros_like launch per rank, then the all-gather of one element per rank while the
        host launches ProcessGroupNCCL's copy per rank."""
        stack, n = self.plan.scenario.stack, self.plan.layout.dp * self.plan.layout.cp
        if n <= 1:
            return
        launches = n * stack.launch_us * 1e-6
        for _ in range(stack.step_sync_collectives):
            yield from self._wait_one(dev, self._dp_launch(dev, "all-reduce", SYNC_BYTES, "step sync(dp)"))
        for _ in range(stack.step_metric_states):
            yield from self._wait_one(dev, self._dp_launch(dev, "all-reduce", SYNC_BYTES, "metric barrier(dp)"))
            yield from self._compute(dev, launches, "opt", "metric sync zeros_like", -1, -1)
            gather = self._dp_launch(dev, "all-gather", n * SYNC_BYTES, "metric all-gather(dp)")
            yield from self._compute(dev, launches, "opt", "metric sync copies", -1, -1)
            yield from self._wait_one(dev, gather)

    def _wait_one(self, dev: int, ev: simpy.Event) -> Proc:
        if not ev.processed:
            t0 = self.env._now
            yield ev
            self._rec(dev, "dp", "step sync", t0)

    def _launch_deferred(self, dev: int) -> None:
        """Without overlap: every gradient reduced after the backward pass, in one call (and
        the experts' over their EDP group)."""
        if not self.overlap_grad and self._deferred[dev] > 0:
            op = self.grad_op
            self._dp_launch(dev, op, self._deferred[dev], f"{op}(dp)")
        if not self.overlap_grad and self._edeferred[dev] > 0:
            op = "all-reduce" if self.zero == 0 else "reduce-scatter"
            self._edp_launch(dev, op, self._edeferred[dev], f"{op}(edp)")

    def _wait_dp(self, dev: int, label: str) -> Proc:
        """The main stream waits for every DP collective this device has launched."""
        pending = [e for e in self.dp_pending[dev] if not e.processed]
        if pending:
            t0 = self.env._now
            yield simpy.AllOf(self.env, pending)
            self._rec(dev, "dp", label, t0)

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
            t0 = self.env._now
            yield ev
            self._rec(dev, "dp", "wait params", t0, stage, mb)

    def _grad_ready(self, dev: int, pending: float, flush: bool = False) -> float:
        """Launch a DP bucket once `pending` gradient bytes fill one (or at the end).
        Without overlap every gradient waits for the end of the backward pass."""
        if not self.overlap_grad:
            if flush:
                self._deferred[dev] += pending
                self._bucket_passes(dev, pending)
                return 0.0
            return pending
        if pending >= self.bucket_bytes or (flush and pending > 0):
            op = self.grad_op
            self._dp_launch(dev, op, pending, f"{op}(dp)", delay=self._bucket_passes(dev, pending))
            return 0.0
        return pending

    def _bucket_passes(self, dev: int, nbytes: float) -> float:
        """A bucket of `nbytes` gradient bytes is full: the stack's per-bucket passes over it
        (NaN-check norm, 1/DP scaling: stack.grad_buffer_passes) run on the compute stream
        before its reduction. They are owed until the stage's last backward ends
        (`_pay_bucket_passes`); returned: all owed so far, the delay before this bucket's
        reduction can start (the compute stream reaches it only after them)."""
        if self.grad_passes is None or nbytes <= 0:
            return 0.0
        self._owed[dev] += self.grad_passes.bucket_s(nbytes)
        return self._owed[dev]

    def _pay_bucket_passes(self, dev: int, stage: int, mb: int, last: bool) -> Proc:
        """The compute stream runs the bucket passes owed, once the stage's `last` backward
        and its send are done: Megatron's later pipeline stages start their gradient sync
        after the cooldown's last send (delay_grad_reduce, on by default: arguments.py:1422,
        training.py:1001-1002, pipeline_parallel/schedules.py:1504-1506 at core_r0.8.0); on
        the first stage the passes interleave with the last backward, the same total."""
        owed = self._owed.pop(dev, 0.0) if last else 0.0
        if owed > 0:
            yield from self._compute(dev, owed, "opt", "grad buffer passes", stage, mb)



def _stream_start(env: simpy.Environment, start) -> None:
    """Call `start(event)` where a process created now would first run: an event of
    urgent priority scheduled now, as simpy's Initialize is."""
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None
    ev.callbacks.append(start)
    env.schedule(ev, URGENT)


def _layer_grads(st: StageWork) -> list[float]:
    """DP gradient bytes of a stage's layers in the order the backward completes them (the
    last layer first; an MoE model's dense first layers reduce their own size)."""
    moe = st.layers - st.dense_layers
    return [st.grad_bytes_per_layer] * moe + [st.dense_grad_bytes_per_layer if st.moe else st.grad_bytes_per_layer] * st.dense_layers
