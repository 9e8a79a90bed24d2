"""Rank placement check: a tensor- or context-parallel group whose ranks lie in more than
one NVLink (scale-up) domain runs its collectives over the scale-out network, usually many
times slower. `placement_warnings(plan)` says how many groups do and names a layout change
that keeps them inside one domain, tried in this order:

    1. the order of the axes (`parallel.order`): TP innermost, CP next to it;
    2. a smaller degree of that axis (TP dividing the attention heads, CP splitting the
       sequence), DP taking the GPUs it frees;
    3. none: no degree above 1 fits one domain beside the inner axes (e.g. CP16 beside TP8
       on 8-GPU nodes, as Llama 3 ran at 128K: then the traffic crosses by design).

A group is checked against the domain of every one of its ranks (Topology.nvlink_domains);
topologies without such a tier (TPU tori) are not checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from simtrain.scenario.layout import DIMS, Layout

CHECKED = ("tp", "cp")


def straddling(L: Layout, dim: str, domains) -> tuple[int, int]:
    """(groups of `dim` whose ranks lie in more than one domain, all groups of `dim`).
    Vectorized (a million devices in well under a second): the ranks of a group are its
    first one plus multiples of the dimension's stride."""
    d = np.asarray(domains[:L.world])
    ranks = np.arange(L.world)
    step, size = L.stride(dim), L.size(dim)
    first = ranks[(ranks // step) % size == 0]
    members = d[first[:, None] + step * np.arange(size)[None, :]]
    return int((members != members[:, :1]).any(axis=1).sum()), len(first)


def _order_fix(L: Layout, dim: str) -> tuple[str, ...]:
    if dim == "tp":
        return ("tp",) + tuple(d for d in L.order if d != "tp")
    return ("tp", "cp") + tuple(d for d in L.order if d not in ("tp", "cp"))


def _resized(L: Layout, dim: str, size: int, order: tuple[str, ...]) -> Layout | None:
    inner = {d: getattr(L, d) for d in DIMS if d != "dp"}
    inner[dim] = size
    prod = inner["tp"] * inner["cp"] * inner["pp"]
    if L.world % prod:
        return None
    return dataclasses.replace(L, **{dim: size}, dp=L.world // prod, order=order)


def _degrees(plan: Any, dim: str) -> list[int]:
    """Smaller degrees of `dim` the model allows, largest first."""
    L, s = plan.layout, plan.scenario
    now = getattr(L, dim)
    if dim == "tp":
        heads, kv = s.model.num_attention_heads, s.model.num_key_value_heads
        return [t for t in range(now - 1, 0, -1) if heads % t == 0 and (kv % t == 0 or t % kv == 0)]
    seq = s.training.seq_len
    return [c for c in range(now - 1, 0, -1) if c == 1 or seq % (2 * c) == 0]


def _fix(plan: Any, dim: str, domains: list[int], size_text: str) -> str:
    L = plan.layout
    name = dim.upper()
    order = _order_fix(L, dim)
    if order != L.order and straddling(dataclasses.replace(L, order=order), dim, domains)[0] == 0:
        where = "innermost" if dim == "tp" else "next to tp"
        return f'put {dim} {where}: parallel.order = "{"-".join(order)}"'
    for size in _degrees(plan, dim):
        alt = _resized(L, dim, size, order)
        if alt is not None and straddling(alt, dim, domains)[0] == 0:
            change = f'parallel.{dim} = {size}' + (f' with parallel.order = "{"-".join(order)}"' if order != L.order else "")
            if size == 1:
                return (f"no {name} degree above 1 fits one {size_text} domain beside the axes inside it; {change} "
                        f"keeps {name} traffic on NVLink, or accept it on the network (a topology with larger NVLink "
                        f"domains also fits it)")
            return f"use {change} (parallel.dp follows: {alt.dp}), which fits one {size_text} domain"
    return f"no {name} layout fits one {size_text} domain; a topology with larger NVLink domains would"


def placement_warnings(plan: Any) -> list[str]:
    """One line per axis (TP, CP) with groups that span NVLink domains; [] when none do or
    the topology has no NVLink domains."""
    domains = plan.topology.nvlink_domains()
    if not domains:
        return []
    L = plan.layout
    _, sizes = np.unique(np.asarray(domains[:L.world]), return_counts=True)
    counts, freq = np.unique(sizes, return_counts=True)
    size_text = f"{int(counts[np.argmax(freq)])}-GPU"  # the usual domain size (the smallest of equally usual ones)
    out = []
    for dim in CHECKED:
        if getattr(L, dim) < 2:
            continue
        n, total = straddling(L, dim, domains)
        if n:
            out.append(f"{n} of {total} {dim.upper()} groups ({getattr(L, dim)} ranks each, parallel.order "
                       f'"{"-".join(L.order)}") span more than one {size_text} NVLink domain of {plan.topology.name}: '
                       f"their collectives cross the scale-out network; {_fix(plan, dim, domains, size_text)}")
    return out
