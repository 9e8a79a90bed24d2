"""DeepSpeed's pipeline engine beyond Megatron's, mixed into the Engine: the boundary
tensors sent 1/TP per rank and rebuilt on receipt (stack.pipe_partitioned,
simtrain.workload.pipe_partition) and the tied word embedding's gradient all-reduced
between the first and last stage after the flush (stack.tied_grad_allreduce;
deepspeed/runtime/pipe/engine.py @v0.5.4, _exec_reduce_tied_grads)."""

from __future__ import annotations

from simtrain.engine.plan import Plan
from simtrain.engine.primitives import Proc
from simtrain.engine.timeline import record
from simtrain.workload.pipe_partition import boundary_work

# record labels (simtrain.analysis.run sums them for the report)
PIPE_GATHER = "all-gather(pipe partition)"
PIPE_COPIES = "pipe-partition copies"
TIED_ALLREDUCE = "all-reduce(tied embedding)"


def pipe_partition_work(plan: "Plan") -> tuple[float, dict[tuple[int, str], tuple[int, float, float]]]:
    """DeepSpeed's TP-partitioned boundary tensors (stack.pipe_partitioned,
    simtrain.workload.pipe_partition): the whole boundary tensor's bytes (micro-batch x
    sequence / CP x hidden x 2, TP x the point-to-point slice), and per (virtual stage, "F"
    or "B") with any work: (TP all-gathers before the pass, copy seconds before, copy
    seconds after). Empty without the stack key or without TP."""
    L = plan.layout
    if not plan.scenario.stack.pipe_partitioned or L.tp <= 1:
        return 0.0, {}
    n = plan.p2p_bytes * L.tp
    sch, dev = plan.schedule, plan.device
    out = {}
    for st in plan.stages:
        for kind in ("F", "B"):
            w = boundary_work(kind, n, L.tp, sch.is_first(st.index), sch.is_last(st.index))
            if w.gathers or w.before_kernels or w.after_kernels:
                out[(st.index, kind)] = (w.gathers, w.before_s(dev), w.after_s(dev))
    return n, out


def tied_grad_ends(plan: "Plan") -> tuple[float, tuple[int, int] | None]:
    """stack.tied_grad_allreduce: the word-embedding gradient bytes each TP rank of the
    first and the last pipeline stage all-reduce between them (vocabulary x hidden / TP,
    in the gradient's element size), and the (first, last) virtual stage indices; (0, None)
    without the key, without tied embeddings, or when one rank holds both ends."""
    s, L, sch = plan.scenario, plan.layout, plan.schedule
    m = s.model
    if not s.stack.tied_grad_allreduce or not m.tie_word_embeddings or sch.chains != 1:
        return 0.0, None
    first = next(st.index for st in plan.stages if sch.is_first(st.index))
    last = next(st.index for st in plan.stages if sch.is_last(st.index))
    if sch.placement[first] == sch.placement[last]:
        return 0.0, None
    return m.vocab_size * m.hidden_size / L.tp * plan.grad_bytes, (first, last)


class DeepSpeedPipe:
    """Mixed into `Engine` (which sets env, records, comm, classes, plan, free and the
    primitives these steps use)."""

    def _ds_pipe_init(self, plan: Plan) -> None:
        # per virtual stage and pass: (all-gathers, copy seconds before, copy seconds after)
        self.pipe_full_bytes, self.pipe_work = pipe_partition_work(plan)
        # bytes per TP rank, (first, last) virtual stage
        self.tied_bytes, self.tied_stages = tied_grad_ends(plan)
        self.tied_start: dict[int, float] = {}

    def _unpartition(self, dev: int, pw: tuple[int, float, float], kind: str, stage: int, mb: int) -> Proc:
        """DeepSpeed's PartitionedTensor.full() before a pass (stack.pipe_partitioned): the
        TP all-gathers of the whole boundary tensor, then the copies around them."""
        for _ in range(0 if self.free else pw[0]):
            t0 = self.env.now
            yield from self.collective(dev, "tp", "all-gather", self.pipe_full_bytes)
            self._rec(dev, "tp", PIPE_GATHER, t0, stage, mb)
        yield from self._compute(dev, pw[1], kind, PIPE_COPIES, stage, mb)

    def _tied_group(self, dev: int) -> tuple[tuple[int, int], tuple[int, ...]]:
        """(first-stage rank, last-stage rank) of `dev`'s tied-embedding pair, and the
        offsets of the pairs its class stands for (refined what-if classes: its own only)."""
        first, last = self.tied_stages
        a = self._peer_rank(dev, first) if self.plan.schedule.placement[first] != self._coord(dev).pp else dev
        b = self._peer_rank(a, last)
        copies = self.classes.p2p_copies(a, b) if self.classes.kind != "refined" else (0,)
        return (a, b), copies

    def _tied_allreduce(self, dev: int, pp: int) -> Proc:
        """The tied word-embedding gradient all-reduced between the first and last stage
        (stack.tied_grad_allreduce), after the flush: each side marks itself ready; the
        first stage's device starts the two-rank all-reduce once its partner is ready, the
        last stage's waits for it to end. Waiting for the partner counts as bubble."""
        first = self.plan.schedule.placement[self.tied_stages[0]] == pp
        (a, b), copies = self._tied_group(dev)
        t0 = self.env.now
        self._event(("tied ready", dev)).succeed()
        if first:
            ready = self._event(("tied ready", self.classes.rep_of(b)))
            if not ready.processed:
                yield ready
            self._rec(dev, "bubble", "wait tied", t0, -1, -1)
            t1 = self.tied_start[dev] = self.env.now
            if not self.free:
                _, phases = self.comm.collective("all-reduce", (a, b), self.tied_bytes, copies)
                done = self.env.event()
                self._chain(phases, done.succeed)
                yield done
            self._event(("tied done", dev)).succeed()
            self._rec(dev, "dp", TIED_ALLREDUCE, t1, -1, -1)
        else:
            src = self.classes.rep_of(a)
            done = self._event(("tied done", src))
            if not done.processed:
                yield done
            t1 = min(max(self.tied_start.get(src, t0), t0), self.env.now)  # the transfer's start
            if t1 > t0:
                self.records.append(record(dev, "main", "bubble", "wait tied", t0, t1))
            self._rec(dev, "dp", TIED_ALLREDUCE, t1, -1, -1)
