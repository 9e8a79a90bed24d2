"""Link what-ifs from a scenario (`cluster.nvlink_gbps`, `cluster.nic_gbps`, latencies,
efficiencies, oversubscription: simtrain.scenario.config.TIER_FIELDS). Each is a key of
the topology file, set on the loaded file before its builder runs, so every check of the
builder still applies and the file on disk is never copied or changed:

    fat tree    nvlink_* -> [nvlink], nic_* -> [nic], oversubscription,
                spine_oversubscription (3 tiers), fabric_latency_us -> [fabric]
    torus       ici_* -> [ici]
    explicit    <kind>_gbps / _latency_us / _efficiency -> every [[links]] entry of that
                kind ("nvlink", "nic" or "ici")

`_gbps` sets `bandwidth_gbps`, `_latency_us` sets `latency_us`, `_efficiency` sets
`efficiency`. A what-if on a tier the topology does not have fails with one line that
names the tiers it has.
"""

from __future__ import annotations

import copy
from typing import Any

from simtrain.scenario.errors import bad

SUFFIX_KEYS = {"_gbps": "bandwidth_gbps", "_latency_us": "latency_us", "_efficiency": "efficiency"}
FAT_TREE = {
    **{f"{t}{s}": (t, k) for t in ("nvlink", "nic") for s, k in SUFFIX_KEYS.items()},
    "oversubscription": ("fabric", "oversubscription"),
    "spine_oversubscription": ("fabric", "spine_oversubscription"),
    "fabric_latency_us": ("fabric", "latency_us"),
}
TORUS = {f"ici{s}": ("ici", k) for s, k in SUFFIX_KEYS.items()}
EXPLICIT_KINDS = ("nvlink", "nic", "ici")


def _check(field: str, value: float) -> None:
    if field.endswith("_latency_us"):
        if not 0 <= value <= 1e6:  # a second per hop is no network's: a typo, refused
            raise bad(f"cluster.{field}", value, "must be in [0, 1e6] microseconds", "give microseconds, or -1 for the topology's")
    elif field.endswith("_efficiency"):
        if not 0 < value <= 1:
            raise bad(f"cluster.{field}", value, "must be in (0, 1]: the achievable fraction of the wire rate",
                      "give e.g. 0.9, or 0 for the topology's")
    elif field.endswith("_gbps") and value < 1e-3:  # below 1 Mb/s a step would take centuries
        raise bad(f"cluster.{field}", value, "must be at least 0.001 Gb/s", "give Gb/s per direction, e.g. 400, or 0 for the topology's")
    elif value <= 0:
        raise bad(f"cluster.{field}", value, "must be positive", "give the value, or 0 for the topology's")


def _split(field: str) -> tuple[str, str] | None:
    for suffix, key in SUFFIX_KEYS.items():
        if field.endswith(suffix):
            return field[: -len(suffix)], key
    return None


LABELS = {"oversubscription": "leaf uplink tier", "spine_oversubscription": "spine uplink tier (3-tier fat trees)",
          "fabric_latency_us": "switch fabric"}


def _lacking(field: str, value: float, name: str, kind: str, has: list[str]) -> Exception:
    tier = LABELS.get(field) or f"{field.split('_')[0]} tier"
    return bad(f"cluster.{field}", value, f"topology {name!r} ({kind}) has no {tier} to change",
               "its what-ifs are " + (", ".join(f"cluster.{h}" for h in has) if has else "none"))


def apply_tiers(data: dict[str, Any], tiers: dict[str, float], path: str) -> dict[str, Any]:
    """A copy of topology file `data` with the what-ifs `tiers` (field -> value) set."""
    if not tiers:
        return data
    kind = data.get("kind", "fat-tree")
    name = str(data.get("name", path))
    out = copy.deepcopy(data)
    if kind in ("fat-tree", "torus"):
        table = FAT_TREE if kind == "fat-tree" else TORUS
        three_tier = isinstance(out.get("fabric"), dict) and out["fabric"].get("tiers", 2) == 3
        has = [f for f in table if f != "spine_oversubscription" or three_tier]
        for field, value in tiers.items():
            if field not in has:
                raise _lacking(field, value, name, kind, has)
            _check(field, value)
            section, key = table[field]
            if section in out and not isinstance(out[section], dict):
                continue  # the builder reports the malformed table
            out.setdefault(section, {})[key] = value
        return out
    links = out.get("links", [])
    links = links if isinstance(links, list) else []
    present = sorted({str(l.get("kind", "link")) for l in links if isinstance(l, dict)})
    has = [f"{k}{s}" for k in EXPLICIT_KINDS if k in present for s in SUFFIX_KEYS]
    for field, value in tiers.items():
        split = _split(field)
        if field not in has or split is None:
            raise _lacking(field, value, name, kind, has)
        _check(field, value)
        tier, key = split
        for link in links:
            if isinstance(link, dict) and link.get("kind", "link") == tier:
                link[key] = value
    return out
