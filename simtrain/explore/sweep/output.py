"""Sweep rows out: CSV, Parquet (when pyarrow is installed), the top-k table."""

from __future__ import annotations

import csv
from typing import Any

from simtrain.scenario.errors import SimtrainError


def write_csv(path: str, rows: list[dict[str, Any]], cols: list[str], opt: str = "--out") -> None:
    try:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    except OSError as e:
        raise SimtrainError(f"{opt} {path!r}: cannot write it ({e.strerror}); check the folder exists and is writable") from None


def write_parquet(path: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SimtrainError(f"--parquet {path!r}: pyarrow is not installed; pip install pyarrow, or use the CSV from --out") from None
    data = {c: [r.get(c) for r in rows] for c in cols}
    arrays = {}
    for c, vals in data.items():
        try:
            arrays[c] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one swept column
            arrays[c] = pa.array([None if v is None else str(v) for v in vals])
    try:
        pq.write_table(pa.table(arrays), path)
    except OSError as e:
        raise SimtrainError(f"--parquet {path!r}: cannot write it ({e}); check the folder exists and is writable") from None


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Valid rows that fit in memory and were simulated, best MFU first (ties: row order)."""
    ok = [r for r in rows if r.get("valid") and r.get("fits_in_memory") and r.get("simulated")]
    return sorted(ok, key=lambda r: (-r["mfu"], r["index"]))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def no_winner(rows: list[dict[str, Any]]) -> str:
    """Why no row ranks: every layout refused (with the commonest reason), none fits, or
    none of those that fit was simulated."""
    valid = [r for r in rows if r.get("valid")]
    if not valid:
        reasons: dict[str, int] = {}
        for r in rows:
            reasons[str(r.get("reason"))] = reasons.get(str(r.get("reason")), 0) + 1
        reason, n = max(reasons.items(), key=lambda kv: kv[1])
        return f"no valid layout: all {len(rows)} were refused; {'all' if n == len(rows) else n} with: {reason}"
    if not any(r.get("fits_in_memory") for r in valid):
        return "no valid layout fits in memory"
    return "no layout that fits in memory was simulated"


def memory_cell(r: dict[str, Any]) -> str:
    """Peak memory per GPU and the device's capacity, e.g. "75.8 of 79.6"."""
    cap = r.get("memory_capacity_gib")
    return f"{r['peak_memory_gib']:.1f}" + (f" of {cap:.1f}" if cap else "")


def top_table(rows: list[dict[str, Any]], swept: list[str], k: int) -> str:
    """The best layouts that fit in memory, by MFU, then a line on any layout that would
    beat them but does not fit."""
    best = ranked(rows)[:k]
    over = sorted((r for r in rows if r.get("valid") and r.get("simulated") and not r.get("fits_in_memory")
                   and (not best or r["mfu"] > best[0]["mfu"])), key=lambda r: -r["mfu"])
    note = ""
    if over:
        top = over[0]
        note = (f"\n  {len(over)} simulated layout{'s' if len(over) > 1 else ''} with a higher MFU do{'es' if len(over) == 1 else ''} "
                f"not fit in memory: the best, row {top['index']}, reaches {100 * top['mfu']:.1f}% at "
                f"{memory_cell(top)} GiB per GPU")
    if not best:
        return no_winner(rows) + note
    show = [c for c in ("tp", "cp", "pp", "dp", "vp", "micro_batch", "recompute", "schedule") if c not in [s.split(".")[-1] for s in swept]]
    head = ["#", *[s.split(".", 1)[-1] for s in swept], *show, "MFU %", "step s", "bubble %", "peak GiB", "fits"]
    body = []
    for i, r in enumerate(best, 1):
        body.append([str(i), *[_fmt(r.get(s)) for s in swept], *[_fmt(r.get(c)) for c in show],
                     f"{100 * r['mfu']:.1f}", f"{r['step_time_s']:.3f}", f"{100 * r['bubble_fraction']:.1f}",
                     memory_cell(r), "yes" if r.get("fits_in_memory") else "no"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in body]
    return "\n".join(lines) + note
