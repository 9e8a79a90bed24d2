"""Sweep throughput: layouts per minute for a 70B model on 1,024 GPUs.

Case: Llama 2 70B on 1,024 A100-80GB (dgx-a100), 4,096-token sequences, 1,024 sequences
per step (4M tokens, Touvron et al. 2023), distributed optimizer, sequence parallelism,
sweeping TP 1,2,4,8 x PP 1,2,4,8,16 x micro-batch 1,2,4 x recompute none,selective,full
(180 layouts; 12 are invalid: global batch not divisible by DP x micro-batch). Reports
layouts/minute counting every layout of the grid, and simulated layouts/minute.

    python benchmarks/sweep_bench.py                 # full grid: baseline, 1 job, --jobs
    python benchmarks/sweep_bench.py --quick         # 16 layouts, --jobs only (CI)
    python benchmarks/sweep_bench.py --jobs 2 --skip-oom

`baseline` is `simtrain.analysis.run.simulate` per layout in one process (what a shell loop over
`simtrain run` costs without process start-up); `sweep` is `simtrain sweep`'s executor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simtrain.explore.sweep import Task, expand, parse_grid, prepare_base, run_tasks  # noqa: E402

SCENARIO = [
    "name=llama2-70b-1024", "model.name=llama2-70b", "cluster.topology=dgx-a100", "cluster.gpus=1024",
    "parallel.tp=8", "parallel.pp=4", "parallel.dp=32", "parallel.vp=1", "parallel.first_stage_layers=-1",
    "parallel.last_stage_layers=-1", "parallel.zero=1", "parallel.sequence_parallel=true",
    "schedule.name=1f1b", "training.seq_len=4096", "training.global_batch=1024",
]
FULL = ["parallel.tp=1,2,4,8", "parallel.pp=1,2,4,8,16", "parallel.micro_batch=1,2,4",
        "parallel.recompute=none,selective,full"]
QUICK = ["parallel.tp=4,8", "parallel.pp=4,8", "parallel.micro_batch=1,2", "parallel.recompute=none,full"]


def bench(grid: list[str], jobs: int, skip_oom: bool) -> tuple[float, int, int]:
    axes = parse_grid(grid)
    base = prepare_base("llama3-405b-8k", SCENARIO, [k for k, _ in axes])
    tasks = [Task(i, v) for i, v in enumerate(expand(axes))]
    t0 = time.perf_counter()
    rows = run_tasks(base, tasks, jobs, opts={"simulate_unfit": not skip_oom})
    dt = time.perf_counter() - t0
    return dt, len(rows), sum(1 for r in rows if r["simulated"])


def baseline(grid: list[str]) -> tuple[float, int, int]:
    from simtrain.analysis.run import simulate
    from simtrain.explore.sweep.base import point_scenario
    from simtrain.scenario.errors import SimtrainError

    axes = parse_grid(grid)
    base = prepare_base("llama3-405b-8k", SCENARIO, [k for k, _ in axes])
    points = expand(axes)
    t0 = time.perf_counter()
    n = 0
    for v in points:
        try:
            simulate(point_scenario(base, v))
            n += 1
        except SimtrainError:
            pass
    return time.perf_counter() - t0, len(points), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 layouts, parallel sweep only")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-oom", action="store_true", help="do not simulate layouts that do not fit")
    a = ap.parse_args(argv)
    grid = QUICK if a.quick else FULL
    print(f"sweep benchmark: Llama 2 70B, 1,024 A100s, {'quick' if a.quick else 'full'} grid, "
          f"{os.cpu_count()} cores{', --skip-oom' if a.skip_oom else ''}")
    print(f"{'mode':<22} {'layouts':>8} {'simulated':>10} {'wall s':>8} {'layouts/min':>12} {'simulated/min':>14}")
    runs = []
    if not a.quick:
        runs.append(("baseline (simulate)", lambda: baseline(grid)))
        runs.append(("sweep --jobs 1", lambda: bench(grid, 1, a.skip_oom)))
    runs.append((f"sweep --jobs {a.jobs}", lambda: bench(grid, a.jobs, a.skip_oom)))
    for name, fn in runs:
        dt, n, sim = fn()
        print(f"{name:<22} {n:>8} {sim:>10} {dt:>8.2f} {60 * n / dt:>12,.0f} {60 * sim / dt:>14,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
