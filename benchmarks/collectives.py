"""Simulator cost of collectives at scale: wall time, simpy events and peak memory.

Runs a 1 GiB all-reduce over all N devices for N in 64, 512, 4,096 and 16,384 with the
ring and hierarchical algorithms on dgx-h100 (rail-optimized fat tree, adaptive routing)
and the torus algorithm on tpu-v5p (slice chosen from N; 16,384 chips exceed a v5p pod,
so that row uses a hypothetical 16x32x32 torus). Wall time covers building the topology,
routing every flow (route_load), registering the loads and running the simpy processes;
peak memory is tracemalloc's peak for that case (Python allocations of the simulator),
taken in a second, traced run so that tracing does not inflate the timings.

    python benchmarks/collectives.py            # all sizes
    python benchmarks/collectives.py --quick    # 64 and 512 only (CI)
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simtrain.hardware.load import load_topology, topology_from_dict  # noqa: E402
from simtrain.network.nccl import CollectiveBench  # noqa: E402

SIZES = (64, 512, 4096, 16384)
QUICK = (64, 512)
CASES = (("ring", "dgx-h100"), ("hierarchical", "dgx-h100"), ("torus", "tpu-v5p"))


def _topology(name: str, n: int):
    if name == "tpu-v5p" and n > 8960:
        import tomllib

        from simtrain.scenario.files import catalog_dir

        data = tomllib.loads((catalog_dir("topologies") / "tpu-v5p.toml").read_text())
        data["shape"] = [16, 32, 32] if n == 16384 else data.get("shape", [])
        return topology_from_dict(data, n), "16x32x32 (hypothetical)"
    t = load_topology(name, n)
    return t, "x".join(map(str, t.shape)) if hasattr(t, "shape") else name


def _once(algo: str, topo_name: str, n: int, size: int):
    t0 = time.perf_counter()
    topo, label = _topology(topo_name, n)
    bench = CollectiveBench(topo, "all-reduce", n, algo)
    t1 = time.perf_counter()
    row = bench.run(size)
    t2 = time.perf_counter()
    return label, row, t0, t1, t2


def measure(algo: str, topo_name: str, n: int, size: int = 2**30) -> dict:
    label, row, t0, t1, t2 = _once(algo, topo_name, n, size)
    tracemalloc.start()
    _once(algo, topo_name, n, size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n": n, "algo": algo, "topology": label, "setup_s": t1 - t0, "run_s": t2 - t1, "wall_s": t2 - t0,
            "events": row.events, "peak_mib": peak / 2**20, "sim_time_ms": row.time_s * 1e3, "busbw": row.busbw_gbps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 64 and 512 devices (for CI)")
    args = ap.parse_args(argv)
    rows = [measure(a, t, n) for n in (QUICK if args.quick else SIZES) for a, t in CASES]
    head = f"{'devices':>8} {'algo':<13} {'topology':<24} {'setup s':>8} {'run s':>7} {'wall s':>7} {'events':>7} {'peak MiB':>9} {'sim ms':>8} {'busbw GB/s':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['n']:>8,} {r['algo']:<13} {r['topology']:<24} {r['setup_s']:>8.2f} {r['run_s']:>7.2f} {r['wall_s']:>7.2f} "
              f"{r['events']:>7,} {r['peak_mib']:>9.1f} {r['sim_time_ms']:>8.2f} {r['busbw']:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
