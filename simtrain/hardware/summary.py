"""Topology summaries for `simtrain topology`: devices, switches, links by kind, bandwidth
per device at each tier and bisection bandwidth (definition in simtrain.hardware.topology)."""

from __future__ import annotations

from typing import Any

from simtrain.hardware.topology import Topology

GB = 1e9


def summarize(topo: Topology) -> dict[str, Any]:
    """A JSON-ready summary; bandwidths in GB/s (1e9 bytes/s) per direction."""
    inv = topo.inventory()
    switches = inv["switches"]
    links = {k: {"count": n, "gbytes_per_s": sorted({round(c / GB, 6) for c in caps})}
             for k, (n, caps) in sorted(inv["links"].items())}
    out: dict[str, Any] = {
        "name": topo.name,
        "description": topo.description,
        "kind": type(topo).__name__.lower(),
        "device": topo.device.name,
        "devices": topo.num_gpus,
        "hosts": inv["hosts"],
        "switches": dict(sorted(switches.items())),
        "links": links,
        "tiers": [{"tier": t, "gbytes_per_s_per_device": bw / GB} for t, bw in topo.tier_bandwidth()],
        "bisection_gbytes_per_s": topo.bisection_bandwidth() / GB,
    }
    fabric = getattr(topo, "fabric", None)
    if fabric is not None:
        out["fabric"] = {"tiers": fabric.tiers, "routing": fabric.routing, "rail_optimized": fabric.rail_optimized,
                         "oversubscription": fabric.oversubscription,
                         **({"spine_oversubscription": fabric.spine_oversubscription} if fabric.tiers == 3 else {})}
    if hasattr(topo, "shape") and hasattr(topo, "wrap"):
        out["torus"] = {"shape": list(topo.shape), "wraparound": list(topo.wrap)}
    return out


def text(summary: dict[str, Any]) -> str:
    s = summary
    lines = [f"{s['name']}: {s['description']}" if s["description"] else s["name"]]
    lines.append(f"  devices    {s['devices']:,} x {s['device']} on {s['hosts']:,} hosts")
    if "fabric" in s:
        f = s["fabric"]
        over = f"{f['oversubscription']:g}:1" + (f", spine {f['spine_oversubscription']:g}:1" if "spine_oversubscription" in f else "")
        lines.append(f"  fabric     {f['tiers']}-tier {'rail-optimized' if f['rail_optimized'] else 'classic'} fat tree, "
                     f"{f['routing']} routing, oversubscription {over}")
    if "torus" in s:
        t = s["torus"]
        lines.append(f"  torus      {'x'.join(map(str, t['shape']))}, wraparound {t['wraparound']}")
    sw = ", ".join(f"{n:,} {k}" for k, n in s["switches"].items()) or "none"
    lines.append(f"  switches   {sw}")
    lines.append("  links (cables; GB/s per direction)")
    for k, v in s["links"].items():
        bws = "/".join(f"{x:g}" for x in v["gbytes_per_s"])
        lines.append(f"    {k:<12} {v['count']:>8,}  {bws}")
    lines.append("  bandwidth per device per direction")
    for t in s["tiers"]:
        lines.append(f"    {t['tier']:<24} {t['gbytes_per_s_per_device']:>10.1f} GB/s")
    lines.append(f"  bisection  {s['bisection_gbytes_per_s']:,.1f} GB/s one direction (min cut between the rank-order halves)")
    return "\n".join(lines)
