"""Run `simtrain run NAME --json --no-progress` on every shipped scenario and compare the
outputs with a saved set, so that a refactoring can show it changed no number.

Run from the repository root:
    python tools/diff_run_json.py --save DIR     # record: DIR/NAME.json per scenario
    python tools/diff_run_json.py DIR            # re-run and compare with DIR; exit 1 on a difference

Each saved file holds the exit status, the parsed JSON (or None) and stderr. Wall-clock
keys (`wall_time_s`, `engine_run_s`, anything with `wall` or `elapsed` in its name) are
dropped before comparing; numbers must agree to 1e-12 relative, everything else exactly.
A scenario refused on purpose (exit status 2) must be refused with the identical line.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-12
TIMING_KEYS = {"wall_time_s", "engine_run_s"}


def is_timing(key: str) -> bool:
    k = key.lower()
    return key in TIMING_KEYS or "wall" in k or "elapsed" in k


def run_one(name: str) -> dict:
    cmd = [sys.executable, "-c", "import sys; from simtrain.cli import main; sys.exit(main())",
           "run", name, "--json", "--no-progress"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = None
    if p.returncode == 0:
        out = json.loads(p.stdout)
    return {"rc": p.returncode, "json": out, "stderr": p.stderr.strip()}


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if not is_timing(k)}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'saved' if k in a else 'new'}")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            return []
        if abs(a - b) <= RTOL * max(abs(a), abs(b)):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="folder of saved outputs (NAME.json per scenario)")
    ap.add_argument("--save", action="store_true", help="record the outputs into DIR instead of comparing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="substring of the scenario names to run")
    a = ap.parse_args(argv)
    names = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))
    if a.only:
        names = [n for n in names if a.only in n]
    d = Path(a.dir)
    with ThreadPoolExecutor(a.jobs) as ex:
        results = dict(zip(names, ex.map(run_one, names)))
    if a.save:
        d.mkdir(parents=True, exist_ok=True)
        for n, r in results.items():
            (d / f"{n}.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
        refused = [n for n, r in results.items() if r["rc"] != 0]
        print(f"saved {len(results)} scenarios to {d}" + (f"; refused: {', '.join(refused)}" if refused else ""))
        return 0
    bad = 0
    for n, r in results.items():
        f = d / f"{n}.json"
        if not f.exists():
            print(f"{n}: no saved output"); bad += 1; continue
        saved = json.loads(f.read_text())
        problems = []
        if saved["rc"] != r["rc"]:
            problems.append(f"exit status {saved['rc']} != {r['rc']}")
        if saved["rc"] != 0 or r["rc"] != 0:
            if saved["stderr"] != r["stderr"]:
                problems.append(f"stderr {saved['stderr']!r} != {r['stderr']!r}")
        else:
            problems += diff(strip(saved["json"]), strip(r["json"]))
        if problems:
            bad += 1
            print(f"{n}: DIFFERENT"); [print(f"  {p}") for p in problems[:20]]
        else:
            print(f"{n}: same" + (" (refused identically)" if r["rc"] else ""))
    missing = sorted(p.stem for p in d.glob("*.json") if p.stem not in results and not a.only)
    for n in missing:
        print(f"{n}: saved but no longer shipped"); bad += 1
    print(f"{len(results) - bad if bad <= len(results) else 0} same, {bad} different")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
