"""Topologies by name: the builder of each kind of file and `load_topology`.

Every kind is listed here, by the hardware layer that owns them; a new kind is a module
with a `build_<kind>(data, num_gpus, device_override, path)` function and one line below.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from simtrain.hardware.devices import Device, get_device
from simtrain.hardware.explicit import build_explicit
from simtrain.hardware.fat_tree import build_fat_tree
from simtrain.hardware.tiers import apply_tiers
from simtrain.hardware.topology import Topology
from simtrain.hardware.torus import build_torus
from simtrain.scenario.errors import bad
from simtrain.scenario.files import read_toml, resolve_path
from simtrain.scenario.layout import MAX_DEVICES

BUILDERS: dict[str, Callable[..., Topology]] = {
    "fat-tree": build_fat_tree,
    "explicit": build_explicit,
    "torus": build_torus,
}


def load_topology(source: str, num_gpus: int, device_override: str = "", near: str | None = None,
                  tiers: dict[str, float] | None = None) -> Topology:
    """Build topology `source` (topologies/ name or path) sized for `num_gpus` accelerators;
    `near`: the scenario file that names it (a topology next to it is found first);
    `tiers`: link what-ifs (cluster.nic_gbps, ...: simtrain.hardware.tiers).
    Topologies are immutable once built: the last few are kept (sweeps and searches ask
    for the same one thousands of times), keyed by the file's path and modification time."""
    if not 0 <= num_gpus <= MAX_DEVICES:
        raise bad("cluster.gpus", num_gpus, f"must be between 1 and simtrain's limit of {MAX_DEVICES:,} devices",
                  "give the number of accelerators to build")
    path = resolve_path(source, "topologies", "topology", "cluster.topology", near)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    return _load(str(path), stamp, num_gpus, device_override, near, tuple(sorted((tiers or {}).items())))


@lru_cache(maxsize=16)
def _load(path: str, stamp: int | None, num_gpus: int, device_override: str, near: str | None,
          tiers: tuple[tuple[str, float], ...]) -> Topology:
    data = apply_tiers(read_toml(Path(path), "cluster.topology"), dict(tiers), path)
    device = get_device(device_override, "cluster.device", near) if device_override else ""
    return topology_from_dict(data, num_gpus, device, path)


def topology_from_dict(data: dict[str, Any], num_gpus: int, device_override: "str | Device" = "", path: str = "topology") -> Topology:
    kind = data.get("kind", "fat-tree")
    if kind not in BUILDERS:
        raise bad("kind", kind, f"unknown topology kind in {path}", f"use one of {', '.join(BUILDERS)}")
    return BUILDERS[kind](data, num_gpus, device_override, path)
