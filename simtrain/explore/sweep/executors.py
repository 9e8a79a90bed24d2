"""Run sweep tasks: serially, on local processes (`--jobs N`), or on Ray (`--executor ray`).

Every executor returns the same rows in task order: a point's row depends only on the
base scenario and the point (the worker caches change speed, never results). Invalid
points are answered in the parent without dispatching them. The rest go out in chunks
of points with the same parallel sizes (TP, CP, PP, DP, VP: they share routes, which a
worker then computes once, and often simulations), the costliest chunks first
(micro-batches x stages) so that the last layouts do not run alone on one core.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing as mp
import os
from collections import defaultdict
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator

from simtrain.explore.sweep.bound import bound_task, search_task
from simtrain.explore.sweep.evaluate import Caches, Task, evaluate, precheck
from simtrain.explore.sweep.progress import Progress
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.files import memoized

EXECUTORS = ("local", "ray")

# worker-level state (one per process: set by the pool initializer, or lazily on Ray)
_STATE: dict[str, Any] = {}


def _worker_fn(kind: str) -> Callable[..., Any]:
    if kind == "row":
        return evaluate
    if kind == "bound":
        return bound_task
    if kind == "search":
        return search_task
    raise ValueError(kind)


@contextmanager
def gc_tuned() -> Iterator[None]:
    """Fewer garbage collections while a worker evaluates points: the young generation
    collected every 50,000 net allocations instead of 700, the oldest after 10 middle
    ones (a sweep's worker spent 4% of its time in about a thousand collections that
    found next to nothing; garbage still goes, in bounded batches). Rows are unchanged."""
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 10)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _run_chunk(base: dict[str, Any], chunk: list[Task], kind: str, opts: dict[str, Any]) -> list[dict[str, Any]]:
    caches = _STATE.setdefault("caches", Caches())
    fn = _worker_fn(kind)
    with memoized(), gc_tuned():
        return [fn(base, t, caches, **opts) for t in chunk]


def _init(base: dict[str, Any], kind: str, opts: dict[str, Any]) -> None:
    _STATE.update(base=base, kind=kind, opts=opts, caches=Caches())
    memo = memoized()  # input files are found and read once per worker (it ends with the sweep)
    memo.__enter__()
    _STATE["memo"] = memo


def _start_pool(base: dict[str, Any], kind: str, opts: dict[str, Any], size: int):
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(size, initializer=_init, initargs=(base, kind, opts))


def _work(chunk: list[Task]) -> list[dict[str, Any]]:
    return _run_chunk(_STATE["base"], chunk, _STATE["kind"], _STATE["opts"])


def _work_in_session(job: tuple[str, dict[str, Any], list[Task]]) -> list[dict[str, Any]]:
    kind, opts, chunk = job
    return _run_chunk(_STATE["base"], chunk, kind, opts)


_SESSION: dict[str, Any] = {}  # a pool kept across run_tasks calls (local_session)


@contextmanager
def local_session(base: dict[str, Any], jobs: int = 0, executor: str = "local") -> Iterator[None]:
    """Keep one pool of local worker processes (and their caches: routes, schedules,
    simulations) across several run_tasks calls on `base`, as the search makes: one
    for its bounds, then one per round of simulations."""
    jobs = jobs or default_jobs()
    if executor != "local" or jobs == 1 or _SESSION:
        yield
        return
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    pool = ctx.Pool(jobs, initializer=_init, initargs=(base, "row", {}))
    _SESSION.update(pool=pool, base=base, jobs=jobs)
    try:
        yield
    finally:
        _SESSION.clear()
        pool.terminate()
        pool.join()


def default_jobs() -> int:
    return os.cpu_count() or 1


def make_chunks(items: list[tuple[float, Hashable, Task]], jobs: int) -> list[list[Task]]:
    """Group tasks by key, split groups to at most ceil(n / (2 jobs)) tasks, costliest first."""
    groups: dict[Hashable, list[tuple[float, Task]]] = defaultdict(list)
    for cost, key, t in items:
        groups[key].append((cost, t))
    cap = max(1, math.ceil(len(items) / (2 * jobs)))
    chunks: list[tuple[float, int, list[Task]]] = []
    for members in groups.values():
        members.sort(key=lambda ct: ct[1].index)
        for i in range(0, len(members), cap):
            part = members[i:i + cap]
            chunks.append((sum(c for c, _ in part), part[0][1].index, [t for _, t in part]))
    chunks.sort(key=lambda c: (-c[0], c[1]))
    return [c[2] for c in chunks]


def run_tasks(base: dict[str, Any], tasks: list[Task], jobs: int = 0, executor: str = "local",
              address: str = "", kind: str = "row", opts: dict[str, Any] | None = None,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """Rows for `tasks`, in task order."""
    with memoized():
        return _run_tasks(base, tasks, jobs, executor, address, kind, opts, progress)


def check_jobs(jobs: int) -> None:
    """--jobs: a number of worker processes; 0 (the default) means one per core."""
    if jobs < 0:
        raise SimtrainError(f"--jobs {jobs}: must be at least 1; leave it out (or give 0) to use every core")


def _run_tasks(base: dict[str, Any], tasks: list[Task], jobs: int, executor: str, address: str, kind: str,
               opts: dict[str, Any] | None, progress: Progress | None) -> list[dict[str, Any]]:
    opts = dict(opts or {})
    check_jobs(jobs)
    jobs = jobs or default_jobs()
    if executor not in EXECUTORS:
        raise SimtrainError(f"--executor {executor!r}: unknown executor; use one of {', '.join(EXECUTORS)}")
    pool = None
    if executor == "local" and jobs > 1 and len(tasks) > 1 and _SESSION.get("base") is not base:
        # started before the points are checked here: the workers start up meanwhile
        pool = _start_pool(base, kind, opts, min(jobs, len(tasks)))
    try:
        return _dispatch(base, tasks, jobs, executor, address, kind, opts, progress, pool)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _dispatch(base: dict[str, Any], tasks: list[Task], jobs: int, executor: str, address: str, kind: str,
              opts: dict[str, Any], progress: Progress | None, pool) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    todo: list[tuple[float, Hashable, Task]] = []
    for t in tasks:
        # a search's bounds check validity themselves (as cheaply as the check here): no
        # second scenario per candidate in this process, which dispatches nothing meanwhile
        row, cost, key, scenario = (None, 1.0, _sizes(t), None) if kind == "bound" else precheck(base, t)
        if row is not None:
            out[t.index] = row
            if progress:
                progress.update()
        else:  # (with its scenario: not built again where it runs)
            todo.append((cost, key, t if scenario is None else Task(t.index, t.values, scenario)))
    chunks = make_chunks(todo, jobs)

    def collect(rows) -> None:
        for row in rows:
            out[row["index"]] = row
            if progress:
                progress.update()

    if executor == "ray":
        _run_ray(base, chunks, jobs, address, kind, opts, collect)
    elif _SESSION.get("base") is base and len(todo) > 1:
        for rows in _SESSION["pool"].imap_unordered(_work_in_session, [(kind, opts, c) for c in chunks]):
            collect(rows)
    elif pool is None or len(todo) <= 1:
        caches = Caches()
        fn = _worker_fn(kind)
        with gc_tuned():
            collect(fn(base, t, caches, **opts) for c in chunks for t in c)
    else:
        for rows in pool.imap_unordered(_work, chunks):
            collect(rows)
    return [out[t.index] for t in tasks]


def _sizes(task: Task) -> Hashable:
    """The layout sizes a point sets (its group key without building its scenario)."""
    v = task.values
    return tuple(v.get(f"parallel.{k}") for k in ("tp", "cp", "pp", "dp", "vp", "micro_batch"))


class Stream:
    """Tasks submitted one at a time and answered as they finish, on the local session's
    pool (`local_session`), on Ray, or here when neither runs: what the search's second
    phase needs to keep every worker busy while its threshold rises.

        with Stream(base, jobs, executor, kind, opts) as st:
            st.submit(task); row = st.next()   # rows come back in completion order
    """

    def __init__(self, base: dict[str, Any], jobs: int = 0, executor: str = "local", kind: str = "row",
                 opts: dict[str, Any] | None = None):
        import queue

        self.base, self.kind, self.opts = base, kind, dict(opts or {})
        self.executor = executor
        self.pending = 0
        self._done: Any = queue.Queue()
        self._serial: list[Task] = []
        self._caches = Caches()
        self._pool = _SESSION.get("pool") if executor == "local" and _SESSION.get("base") is base else None
        self._ray: list = []
        self.slots = 2 * (_SESSION.get("jobs", 1) if self._pool else (jobs or default_jobs()) if executor == "ray" else 1)
        if executor == "ray":
            import ray

            self._remote = ray.remote(_run_chunk)
            self._base_ref = ray.put(base)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ray:
            import ray

            for ref in self._ray:
                ray.cancel(ref, force=True)

    def submit(self, task: Task, **opts: Any) -> None:
        """Start `task` (with `opts` on top of the stream's)."""
        self.pending += 1
        opts = {**self.opts, **opts}
        if self._pool is not None:
            self._pool.apply_async(_work_in_session, ((self.kind, opts, [task]),),
                                   callback=lambda rows: self._done.put(rows[0]),
                                   error_callback=lambda e: self._done.put(e))
        elif self.executor == "ray":
            self._ray.append(self._remote.remote(self._base_ref, [task], self.kind, opts))
        else:
            self._serial.append((task, opts))

    def next(self) -> dict[str, Any]:
        """The row of a finished task (blocks until one is)."""
        if not self.pending:
            raise RuntimeError("no task in flight")
        self.pending -= 1
        if self._pool is not None:
            row = self._done.get()
            if isinstance(row, BaseException):
                raise row
            return row
        if self.executor == "ray":
            import ray

            done, self._ray = ray.wait(self._ray, num_returns=1)
            return ray.get(done[0])[0]
        task, opts = self._serial.pop(0)
        return _worker_fn(self.kind)(self.base, task, self._caches, **opts)


def _ray_init(address: str, jobs: int) -> bool:
    """Start or join Ray unless it is up already; True when this call started it."""
    try:
        import ray
    except ImportError:
        raise SimtrainError("--executor ray: ray is not installed; pip install 'simtrain[ray]' (or ray), or use --executor local") from None
    if ray.is_initialized():
        return False
    root = str(Path(__file__).resolve().parents[3])  # so Ray workers import this simtrain
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    kwargs: dict[str, Any] = dict(runtime_env={"env_vars": env}, log_to_driver=False, include_dashboard=False,
                                  logging_level=logging.ERROR)
    if address:
        _check_reachable(address)
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = jobs
    try:
        ray.init(**kwargs)
    except Exception as e:  # ConnectionError, RuntimeError, ... from Ray
        where = f"--address {address!r}" if address else "--executor ray"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SimtrainError(f"{where}: cannot start or reach Ray ({msg}); check the address (ray status) or use --executor local") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on (Ray itself retries for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    if hostport in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise SimtrainError(f"--address {address!r}: nothing answers there ({getattr(e, 'strerror', None) or e}); "
                            f"check the Ray head's address (ray status), or leave --address out for a local Ray") from None


@contextmanager
def ray_session(executor: str, address: str = "", jobs: int = 0) -> Iterator[None]:
    """Keep one Ray session across several run_tasks calls (a no-op for local)."""
    started = executor == "ray" and _ray_init(address, jobs or default_jobs())
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _run_ray(base, chunks: list[list[Task]], jobs: int, address: str, kind: str, opts, collect) -> None:
    started = _ray_init(address, jobs)
    import ray

    try:
        remote = ray.remote(_run_chunk)
        base_ref = ray.put(base)
        pending = [remote.remote(base_ref, c, kind, opts) for c in chunks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            collect(ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()
