"""One sweep point -> one flat row: validity (with the one-line reason), memory, metrics.

The simulation is `simtrain.analysis.run.simulate` step by step, plus one worker-level cache:
the routes and link loads of every collective and transfer a layout registers before its
run (`Engine.prepare`, a fifth of a 1,024-GPU simulation) depend only on the topology
and the layout's process groups, so they are computed once per (topology, GPUs, TP, CP,
PP, DP, VP, stage placement, engine options) and handed to later engines through
`Comm.fork`; and points whose simulation is provably the same (see `sim_key`) share one.
Rows are identical with and without the caches (tested), and in any order.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterator

import simpy

# (the simulation's modules imported with this one, not on a worker's first point: forked
# workers inherit them instead of each importing them again)
from simtrain.analysis.metrics import PARTS, Result
from simtrain.analysis.run import simulate_plan as run_plan
from simtrain.engine.plan import check_supported, make_plan
from simtrain.explore.sweep.base import point_scenario
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.config import tier_overrides
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.layout import make_layout
from simtrain.workload.memory import estimate

METRICS = ("step_time_s", "mfu", "hfu", "tflops_per_gpu", "tokens_per_s", "bubble_fraction")
BREAKDOWN = tuple(f"breakdown_{p}" for p in PARTS)
LAYOUT = ("tp", "cp", "pp", "dp", "vp", "micro_batch", "global_batch", "microbatches",
          "recompute", "sequence_parallel", "zero", "schedule")
STATUS = ("valid", "fits_in_memory", "simulated", "reason")
MEMORY = ("peak_memory_gib", "memory_capacity_gib")
COLUMNS = ("index",) + LAYOUT + STATUS + METRICS + BREAKDOWN + MEMORY


def columns(swept: list[str]) -> list[str]:
    """Row columns: the index, every swept key, then the fixed columns."""
    return ["index", *swept, *[c for c in COLUMNS if c != "index"]]


@dataclass(frozen=True)
class Task:
    index: int
    values: dict[str, Any] = field(hash=False)  # "section.key" -> value
    # the point's scenario when the parent has built it already (`precheck`): not built again
    scenario: Any = field(default=None, hash=False, compare=False, repr=False)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class CommCache:
    """LRU of Comm prototypes (routes, phase shapes, link loads), keyed by what they depend on."""

    def __init__(self, size: int = 64):
        self.size = size
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(plan) -> Hashable:
        s, L = plan.scenario, plan.layout
        e = s.engine
        return (s.cluster.topology, s.cluster.device, tuple(tier_overrides(s.cluster).items()), L.world, L.tp, L.cp,
                L.pp, L.dp, L.vp, L.order,
                tuple(plan.schedule.placement), plan.classes.kind, e.comm, e.collective_algo,
                s.parallel.zero == 0, L.ep, L.etp, s.stack.collective_us, s.stack.ring_gather_scatter, s.whatif)

    def get(self, key: Hashable) -> Any:
        hit = self._d.get(key)
        if hit is not None:
            self._d.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return hit

    def put(self, key: Hashable, value: Any) -> None:
        self._d[key] = value
        if len(self._d) > self.size:
            self._d.popitem(last=False)


def sim_key(plan) -> Hashable:
    """What a simulation's result depends on: the scenario (less its name) and the plan's
    per-stage work. A recomputation mode that costs nothing (selective recomputation with
    FlashAttention, which already recomputes the attention core) simulates exactly as
    "none": the engine sees recomputation only through the stages' costs, which are then
    equal, so such layouts share one simulation."""
    import dataclasses

    s = plan.scenario
    par = s.parallel
    if all(st.layer.recompute == 0 and st.layer.recompute_flops == 0 for st in plan.stages):
        par = dataclasses.replace(par, recompute="none")
    return (dataclasses.replace(s, name="", description="", source="", parallel=par), plan.stages)


class ResultMemo:
    """LRU of simulated metrics by `sim_key`."""

    def __init__(self, size: int = 256):
        self.size = size
        self._d: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()
        self.hits = 0

    def get(self, key: Hashable) -> dict[str, Any] | None:
        hit = self._d.get(key)
        if hit is not None:
            self._d.move_to_end(key)
            self.hits += 1
        return hit

    def put(self, key: Hashable, value: dict[str, Any]) -> None:
        self._d[key] = value
        if len(self._d) > self.size:
            self._d.popitem(last=False)


@dataclass
class Caches:
    """Worker-level caches (one per process); `None` fields switch a cache off."""

    comm: CommCache | None = field(default_factory=CommCache)
    results: ResultMemo | None = field(default_factory=ResultMemo)


_SCHEDULES: OrderedDict[Hashable, Any] = OrderedDict()


_VALID: set[int] = set()  # ids of cached schedules already validated


@contextmanager
def schedule_cache(size: int = 512) -> Iterator[None]:
    """Memoize `simtrain.schedule.build` while sweep code builds plans in this process,
    and defer validation to `validated` (before a simulation).

    A schedule is a pure function of (name, pp, vp, micro-batches, parameters), and its
    validation costs about ten times its generation; a sweep or search builds the same
    ones many times, and a search looks at the memory of many layouts it never simulates.
    The constraints of each schedule are still checked here. Scoped: the original
    function is back on exit."""
    from simtrain import schedule as sched

    orig = sched.build

    def build(name: str, pp: int, vp: int, microbatches: int, **params: object):
        params = {k: v for k, v in params.items() if v is not None}
        key = (name, pp, vp, microbatches, tuple(sorted(params.items())))
        hit = _SCHEDULES.get(key)
        if hit is None:
            hit = _SCHEDULES[key] = sched.generate_unvalidated(name, pp, vp, microbatches, **params)
            if len(_SCHEDULES) > size:
                gone = _SCHEDULES.popitem(last=False)[1]
                _VALID.discard(id(gone))
        return hit

    sched.build = build
    try:
        yield
    finally:
        sched.build = orig


def validated(schedule) -> None:
    """Validate a schedule `schedule_cache` built (once per schedule); raises ScheduleError."""
    from simtrain.schedule import validate

    if id(schedule) not in _VALID:
        validate(schedule)
        if any(s is schedule for s in _SCHEDULES.values()):
            _VALID.add(id(schedule))


def simulate_plan(plan, cache: CommCache | None = None) -> Result:
    """`simtrain.analysis.run.simulate_plan` with the worker's Comm cache: an identical layout's
    routes and link loads are reused instead of routed again. The timeline is kept per
    action (engine.detail = "action"): the same step, its breakdown summed from fewer
    records (equal to `simtrain run`'s to float rounding)."""

    def setup(engine) -> None:
        engine.coarse = True  # records per action, not per layer: a row needs the metrics only
        if cache is None or engine.free:
            return
        key = cache.key(plan)
        proto = cache.get(key)
        if proto is not None:
            engine.comm = proto.fork(engine.net)
        else:
            engine.prepare()  # run() prepares again: a no-op on registered shapes
            engine.net.exclusive([])  # compile the link classes once: the prototype adopts them
            proto = engine.comm.fork(FlowNetwork(simpy.Environment(), plan.topology))
            proto.net.exclusive([])  # (compiled already, unless the engine's were not adoptable)
            cache.put(key, proto)

    return run_plan(plan, setup, details=False)


def _layout_fields(s, plan=None) -> dict[str, Any]:
    p = s.parallel
    out: dict[str, Any] = dict(tp=p.tp, cp=p.cp, pp=p.pp, dp=p.dp or None, vp=p.vp, micro_batch=p.micro_batch,
                               global_batch=s.training.global_batch or None, microbatches=None,
                               recompute=p.recompute, sequence_parallel=p.sequence_parallel, zero=p.zero,
                               schedule=s.schedule.file or s.schedule.name)
    if plan is not None:
        L = plan.layout
        out.update(dp=L.dp, global_batch=L.global_batch, microbatches=L.microbatches, schedule=plan.schedule.name)
    return out


def empty_row(task: Task) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row["index"] = task.index
    row.update(task.values)
    row.update(valid=False, fits_in_memory=None, simulated=False, reason="")
    return row


def precheck(base: dict[str, Any], task: Task) -> tuple[dict[str, Any] | None, float, Hashable, Any]:
    """Cheap checks in the parent: (finished invalid row, or None), a cost estimate
    (micro-batches x pipeline stages) used to start the slowest layouts first, and a group
    key (the parallel sizes, not the micro-batch: the Comm cache's key does not depend on
    it) so that points sharing routes and simulations go to one worker together; last, the
    point's scenario (None when invalid)."""
    row = empty_row(task)
    try:
        s = point_scenario(base, task.values)
        row.update(_layout_fields(s))
        L = make_layout(s)
    except SimtrainError as e:
        row["reason"] = _first_line(e)
        return row, 0.0, None, None
    return None, float(L.microbatches * L.pp * max(1, L.vp)), (L.tp, L.cp, L.pp, L.dp, L.vp), s


def plan_row(base: dict[str, Any], task: Task) -> tuple[dict[str, Any], Any, Any]:
    """Build and check one point's plan and estimate its memory, without simulating:
    (row, plan, memory report); plan is None when the point is invalid (row says why)."""
    row = empty_row(task)
    try:
        s = task.scenario if task.scenario is not None else point_scenario(base, task.values)
        row.update(_layout_fields(s))
        with schedule_cache():
            plan = make_plan(s)
        check_supported(s)
    except SimtrainError as e:
        row["reason"] = _first_line(e)
        return row, None, None
    row.update(_layout_fields(s, plan))
    row["valid"] = True
    mem = estimate(plan)
    row["fits_in_memory"] = mem.fits_in_memory
    row["peak_memory_gib"] = mem.peak_memory_gib
    row["memory_capacity_gib"] = mem.capacity_gib
    if not mem.fits_in_memory:
        row["reason"] = f"does not fit: peak {mem.peak_memory_gib:.1f} GiB of {mem.capacity_gib:.0f} GiB on pipeline rank {mem.peak_stage}"
    return row, plan, mem


def evaluate(base: dict[str, Any], task: Task, caches: Caches | None = None, simulate_unfit: bool = True) -> dict[str, Any]:
    """Build, check, estimate memory and simulate one point; never raises for user errors."""
    row, plan, mem = plan_row(base, task)
    if plan is None:
        return row
    if not mem.fits_in_memory and not simulate_unfit:
        return row
    return simulate_row(row, plan, caches)


def simulate_row(row: dict[str, Any], plan, caches: Caches | None = None) -> dict[str, Any]:
    """Validate the plan's schedule and simulate it into `row` (metrics, or the reason)."""
    try:
        validated(plan.schedule)
    except SimtrainError as e:
        row.update(valid=False, reason=_first_line(e))
        return row
    caches = caches or Caches(None, None)
    key = sim_key(plan) if caches.results is not None else None
    hit = caches.results.get(key) if caches.results is not None else None
    if hit is not None:
        row["simulated"] = True
        row.update(hit)
        return row
    try:
        r = simulate_plan(plan, caches.comm)
    except SimtrainError as e:
        row.update(valid=False, reason=_first_line(e))
        return row
    except Exception as e:  # a simulator bug: keep the sweep going, say so in the row
        row.update(valid=False, reason=f"simulator error: {type(e).__name__}: {_first_line(e)} "
                   f"({traceback.extract_tb(e.__traceback__)[-1].name})")
        return row
    row["simulated"] = True
    metrics = result_metrics(r)
    if caches.results is not None:
        caches.results.put(key, metrics)
    row.update(metrics)
    return row


def result_metrics(r: Result) -> dict[str, Any]:
    out: dict[str, Any] = {m: float(getattr(r, m)) for m in METRICS}
    for p in PARTS:
        out[f"breakdown_{p}"] = float(r.breakdown.get(p, 0.0))
    return out
