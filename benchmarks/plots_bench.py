"""Drawing speed of the outputs of `simtrain run`: the Gantt chart (PNG and SVG) and the
Perfetto trace of the 405B default, after one simulation.

    python benchmarks/plots_bench.py           # the 405B default (Llama 3 Table 4 row 1)
    python benchmarks/plots_bench.py --quick   # a small pipeline (CI runs this so it cannot rot)

Target (issue 15): the 405B Gantt draws in about a second (it took 7 s for the PNG and
16 s for the SVG when every interval was its own patch). Best of 3 runs per output.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = ['model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=2",
         "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
         "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"']


def best(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    from simtrain.analysis.run import simulate
    from simtrain.analysis.trace import write_trace
    from simtrain.commands.run import device_names
    from simtrain.plots.timeline import plot_timeline, timeline_rows
    from simtrain.scenario.config import load_scenario

    t = time.perf_counter()
    res = simulate(load_scenario(None, SMALL if a.quick else []), link_series=True)
    sim = time.perf_counter() - t
    plan = res.extra["plan"]
    rows = timeline_rows(res.records, list(plan.simulated))
    shares = {k: v / res.step_time_s for k, v in res.breakdown.items()}
    names = device_names(plan)
    with tempfile.TemporaryDirectory() as d:
        png = best(lambda: plot_timeline(rows, Path(d) / "g.png", res.scenario, names, None, shares))
        svg = best(lambda: plot_timeline(rows, Path(d) / "g.svg", res.scenario, names, None, shares))
        trace = best(lambda: write_trace(Path(d) / "t.json", plan, res.records, names, {}, res.extra["_link_series"]))
    print(f"{res.scenario} ({len(res.records):,} records): simulate {sim:.2f} s, Gantt PNG {png:.2f} s, "
          f"Gantt SVG {svg:.2f} s, trace {trace:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
