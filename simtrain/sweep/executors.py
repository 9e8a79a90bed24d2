"""Run sweep tasks: serially, on local processes (`--jobs N`), or on Ray (`--executor ray`).

Every executor returns the same rows in task order: a point's row depends only on the
base scenario and the point (the worker caches change speed, never results). Invalid
points are answered in the parent without dispatching them; the rest start slowest first
(micro-batches x stages) so that the last layouts do not run alone on one core.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Any, Callable

from simtrain.errors import SimtrainError
from simtrain.sweep.evaluate import CommCache, Task, evaluate, precheck
from simtrain.sweep.progress import Progress

EXECUTORS = ("local", "ray")

# worker-level state (one per process: set by the pool initializer, or lazily on Ray)
_STATE: dict[str, Any] = {}


def _worker_fn(kind: str) -> Callable[..., Any]:
    if kind == "row":
        return evaluate
    if kind == "bound":
        from simtrain.search import bound_task

        return bound_task
    raise ValueError(kind)


def _init(base: dict[str, Any], kind: str, opts: dict[str, Any]) -> None:
    _STATE.update(base=base, kind=kind, opts=opts, cache=CommCache())


def _work(task: Task) -> dict[str, Any]:
    return _worker_fn(_STATE["kind"])(_STATE["base"], task, _STATE["cache"], **_STATE["opts"])


def _ray_batch(base: dict[str, Any], tasks: list[Task], kind: str, opts: dict[str, Any]) -> list[dict[str, Any]]:
    cache = _STATE.setdefault("cache", CommCache())
    fn = _worker_fn(kind)
    return [fn(base, t, cache, **opts) for t in tasks]


def default_jobs() -> int:
    return os.cpu_count() or 1


def run_tasks(base: dict[str, Any], tasks: list[Task], jobs: int = 0, executor: str = "local",
              address: str = "", kind: str = "row", opts: dict[str, Any] | None = None,
              progress: Progress | None = None, precheck_rows: bool = True) -> list[dict[str, Any]]:
    """Rows for `tasks`, in task order."""
    opts = dict(opts or {})
    jobs = jobs or default_jobs()
    if jobs < 1:
        raise SimtrainError(f"--jobs {jobs}: must be at least 1; leave it out to use every core")
    if executor not in EXECUTORS:
        raise SimtrainError(f"--executor {executor!r}: unknown executor; use one of {', '.join(EXECUTORS)}")
    out: dict[int, dict[str, Any]] = {}
    todo: list[tuple[float, Task]] = []
    for t in tasks:
        row, cost = precheck(base, t) if precheck_rows else (None, 0.0)
        if row is not None:
            out[t.index] = row
            if progress:
                progress.update()
        else:
            todo.append((cost, t))
    todo.sort(key=lambda ct: (-ct[0], ct[1].index))
    ordered = [t for _, t in todo]

    def collect(rows) -> None:
        for row in rows:
            out[row["index"]] = row
            if progress:
                progress.update()

    if executor == "ray":
        _run_ray(base, ordered, jobs, address, kind, opts, progress, out)
    elif jobs == 1 or len(ordered) <= 1:
        cache = CommCache()
        fn = _worker_fn(kind)
        collect(fn(base, t, cache, **opts) for t in ordered)
    else:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(jobs, len(ordered)), initializer=_init, initargs=(base, kind, opts)) as pool:
            collect(pool.imap_unordered(_work, ordered, chunksize=1))
    return [out[t.index] for t in tasks]


def _run_ray(base, tasks: list[Task], jobs: int, address: str, kind: str, opts, progress, out) -> None:
    try:
        import ray
    except ImportError:
        raise SimtrainError("--executor ray: ray is not installed; pip install 'simtrain[ray]' (or ray), or use --executor local") from None
    started = False
    if not ray.is_initialized():
        root = str(Path(__file__).resolve().parents[2])  # so Ray workers import this simtrain
        env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        kwargs: dict[str, Any] = dict(runtime_env={"env_vars": env}, log_to_driver=False, include_dashboard=False)
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = jobs
        try:
            ray.init(**kwargs)
        except Exception as e:  # ConnectionError, RuntimeError, ... from Ray
            where = f"--address {address!r}" if address else "--executor ray"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SimtrainError(f"{where}: cannot start or reach Ray ({msg}); check the address (ray status) or use --executor local") from None
        started = True
    try:
        remote = ray.remote(_ray_batch)
        base_ref = ray.put(base)
        size = max(1, min(8, len(tasks) // (4 * jobs) or 1))
        batches = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        pending = [remote.remote(base_ref, b, kind, opts) for b in batches]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for row in ray.get(done[0]):
                out[row["index"]] = row
                if progress:
                    progress.update()
    finally:
        if started:
            ray.shutdown()
