"""`simtrain list [KIND]`: what the catalogs hold (scenarios, topologies, schedules, devices,
stacks) and the model catalog, with where each entry comes from."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from simtrain.scenario.catalogs import CATALOGS

KINDS = [*CATALOGS, "models"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "list", help="list the shipped and your own scenarios, topologies, schedules, devices, models, stacks",
        description="List a catalog: scenarios, topologies, schedules, devices, stacks (TOML or text files, "
        "shipped with simtrain and overridden by your own: $SIMTRAIN_HOME/<kind>/, ./<kind>/) or models "
        "(built in). Without KIND, every catalog's names.",
    )
    p.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND", help=f"one of {', '.join(KINDS)}")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    return p


def _first_comment(path) -> str:
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
    except OSError:
        return ""
    return ""


def _file_entries(kind: str) -> list[dict[str, Any]]:
    from simtrain.scenario.errors import SimtrainError
    from simtrain.scenario.files import available, read_toml

    out = []
    for name, root in sorted(available(kind).items()):
        path = root.path / f"{name}{CATALOGS[kind]}"
        entry: dict[str, Any] = {"name": name, "origin": root.origin, "path": str(path)}
        if CATALOGS[kind] == ".toml":
            try:
                entry["description"] = str(read_toml(path, kind).get("description", ""))
            except SimtrainError as e:
                entry["description"] = f"(unreadable: {e})"
        else:
            entry["description"] = _first_comment(path)
        out.append(entry)
    return out


def _device_entries() -> list[dict[str, Any]]:
    from simtrain.hardware.devices import device_files, read_device_file
    from simtrain.scenario.errors import SimtrainError
    from simtrain.scenario.files import available

    roots = available("devices")
    out = []
    for name, p in sorted(device_files().items()):
        entry: dict[str, Any] = {"name": name, "origin": roots[name].origin, "path": str(p)}
        try:  # file by file: one bad file of the user's is listed as such, the others still are
            d, aliases = read_device_file(p)
        except SimtrainError as e:
            entry["description"] = f"(unreadable: {e})"
            out.append(entry)
            continue
        entry.update({"aliases": sorted(aliases), "peak_tflops": d.peak_flops / 1e12,
                      "hbm_gbytes_per_s": d.hbm_bytes_per_s / 1e9, "memory_gib": d.memory_bytes / 2**30,
                      "sustained_fraction": d.sustained_fraction})
        out.append(entry)
    return out


def _model_entries() -> list[dict[str, Any]]:
    from simtrain.scenario.models import CATALOG, model_config
    from simtrain.workload.flops import stats

    out = []
    for name in CATALOG:
        m = model_config({"name": name})
        out.append({"name": name, "origin": "built in", "params_b": stats(m, 2048).params / 1e9,
                    "layers": m.num_hidden_layers, "hidden_size": m.hidden_size, "heads": m.num_attention_heads,
                    "kv_heads": m.num_key_value_heads, "vocab_size": m.vocab_size, "mlp": m.mlp})
    return out


def entries(kind: str) -> list[dict[str, Any]]:
    if kind == "devices":
        return _device_entries()
    if kind == "models":
        return _model_entries()
    return _file_entries(kind)


def _origin(e: dict[str, Any]) -> str:
    return "" if e["origin"] in ("checkout", "shipped", "built in") else f"  [{e['origin']}: {e['path']}]"


def _table(kind: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"no {kind} found (a {kind}/ folder in $SIMTRAIN_HOME or the current directory adds some)"
    w = max(len(r["name"]) for r in rows)
    lines = []
    for r in rows:
        if kind == "devices" and "description" in r:  # unreadable
            text = r["description"]
        elif kind == "devices":
            alias = f" (alias {', '.join(r['aliases'])})" if r["aliases"] else ""
            text = (f"{r['peak_tflops']:7,.0f} TFLOP/s  {r['hbm_gbytes_per_s']:6,.0f} GB/s HBM  "
                    f"{r['memory_gib']:6.1f} GiB  sustained {r['sustained_fraction']:.2f}{alias}")
        elif kind == "models":
            text = (f"{r['params_b']:7.1f}B  {r['layers']:3d} layers  hidden {r['hidden_size']:6,d}  "
                    f"heads {r['heads']:3d}/{r['kv_heads']:<3d}  vocab {r['vocab_size']:,}  {r['mlp']} MLP")
        else:
            text = r["description"]
        lines.append(f"  {r['name'].ljust(w)}  {text}{_origin(r)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.kind:
        rows = entries(args.kind)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{args.kind} ({len(rows)})")
            print(_table(args.kind, rows))
        return 0
    everything = {k: entries(k) for k in KINDS}
    if args.json:
        print(json.dumps(everything, indent=2))
        return 0
    for kind, rows in everything.items():
        names = ", ".join(r["name"] + ("*" if _origin(r) else "") for r in rows) or "(none)"
        print(textwrap.fill(names, 92, initial_indent=f"{kind} ({len(rows)}): ", subsequent_indent="    ",
                            break_on_hyphens=False))
    print("(* your own, overriding or adding to the shipped ones; `simtrain list KIND` for details)")
    return 0
