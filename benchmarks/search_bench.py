"""Layout search speed: `simtrain search` on a scenario, as a ratio to the raw-simpy
baseline of benchmarks/bench.py measured in the same run.

    python benchmarks/search_bench.py                      # llama3-405b-8k, its default space
    python benchmarks/search_bench.py --jobs 2 --set pp=1,2,4,8,16
    python benchmarks/search_bench.py --quick              # a small scenario (CI)

Target (issue 16): `search llama3-405b-8k` with PP16 in its default space <= 40x the
baseline. Prints the wall time, the ratio, how many candidates each rule pruned, and the
winner. The search runs in its own process (`simtrain search --json`), its wall time
measured around it (interpreter start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

QUICK = ["nemo-8b-8"]


def run_search(args: list[str]) -> tuple[float, dict]:
    cmd = [sys.executable, "-c", "import sys; from simtrain.cli import main; sys.exit(main())", "search", *args, "--json"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"search failed: {' '.join(args)}\n{p.stderr}")
    return wall, json.loads(p.stdout)


def main(argv: list[str] | None = None) -> int:
    from bench import baseline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="llama3-405b-8k")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", default=[], metavar="DIM=VALUES",
                    help="a search dimension, e.g. pp=1,2,4,8,16 (passed as --pp 1,2,4,8,16)")
    ap.add_argument("--quick", action="store_true", help="a small scenario (CI)")
    a = ap.parse_args(argv)
    base = baseline(1 if a.quick else 3)
    scenario = QUICK[0] if a.quick else a.scenario
    extra = ["--tp", "1,2", "--pp", "1,2"] if a.quick else []  # quick: a small space, so CI stays fast
    for item in a.set:
        dim, _, values = item.partition("=")
        extra += [f"--{dim.replace('_', '-')}", values]
    wall, out = run_search([scenario, "--jobs", str(a.jobs), *extra])
    counts = out.get("counts", {})
    print(f"search benchmark: {scenario}{' ' + ' '.join(extra) if extra else ''}, --jobs {a.jobs}, {os.cpu_count()} cores")
    print(f"baseline: 1,000,000 raw simpy timeouts in {base:.2f} s")
    print(f"search:   {wall:.1f} s = {wall / base:.1f}x baseline")
    print("candidates: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    w = out.get("winner") or {}
    if w:
        print(f"winner:   TP{w.get('tp')} CP{w.get('cp')} PP{w.get('pp')} DP{w.get('dp')} VP{w.get('vp')} "
              f"mb {w.get('micro_batch')} {w.get('recompute')} {w.get('schedule')}: MFU {100 * w.get('mfu', 0):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
