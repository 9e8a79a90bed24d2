"""Drawing of small topology graphs (matplotlib, Agg backend).

Layers from the bottom: devices, then node switches / leaves, spines, cores; a torus is
drawn as its z-planes side by side (x across, y up). `layout` returns the positions
(tests check these, not pixels).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from simtrain.plots import save_figure  # noqa: E402
from simtrain.scenario.errors import SimtrainError  # noqa: E402

MAX_NODES = 512
LAYER = {"gpu": 0, "nvsw": 1, "switch": 1, "leaf": 2, "spine": 3, "core": 4}
EDGE_COLORS = {"nvlink": "#55A868", "nic": "#4C72B0", "spine": "#DD8452", "core": "#C44E52", "ici": "#8172B2"}


def layout(topo) -> dict:
    G = topo.graph
    if hasattr(topo, "shape") and hasattr(topo, "coord"):
        X, Y, _ = topo.shape
        return {n: (c[0] + c[2] * (X + 1), c[1]) for n in G.nodes for c in [topo.coord(n)]}
    kinds = nx.get_node_attributes(G, "kind")
    layers: dict = {}
    for n in G.nodes:
        layers.setdefault(LAYER.get(kinds.get(n, "switch"), 1), []).append(n)
    pos = {}
    for level, nodes in layers.items():
        nodes = sorted(nodes, key=lambda n: (isinstance(n, str), str(n) if isinstance(n, str) else n))
        width = max(len(nodes) - 1, 1)
        for i, n in enumerate(nodes):
            pos[n] = (i / width if len(nodes) > 1 else 0.5, float(level))
    return pos


def draw_topology(topo, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise SimtrainError(f"--draw {str(path)!r}: unsupported format; end the name with .png or .svg")
    nodes = topo.num_gpus + sum(topo.inventory()["switches"].values())  # counted before building the graph
    if nodes > MAX_NODES:
        raise SimtrainError(
            f"--draw: the graph has {nodes:,} nodes, too many to draw legibly (limit {MAX_NODES}); use fewer --gpus"
        )
    G = topo.graph
    pos = layout(topo)
    fig, ax = plt.subplots(figsize=(11, 6))
    try:
        kinds = nx.get_edge_attributes(G, "kind")
        seen = set()
        for u, v in G.edges:
            if (v, u) in seen:
                continue
            seen.add((u, v))
            k = kinds.get((u, v), "link")
            ax.plot([pos[u][0], pos[v][0]], [pos[u][1], pos[v][1]], color=EDGE_COLORS.get(k, "#999999"), lw=0.6, alpha=0.7)
        nk = nx.get_node_attributes(G, "kind")
        gpus = [n for n in G.nodes if nk.get(n) == "gpu"]
        sws = [n for n in G.nodes if nk.get(n) != "gpu"]
        ax.scatter([pos[n][0] for n in gpus], [pos[n][1] for n in gpus], s=14, c="#333333", label="device", zorder=3)
        if sws:
            ax.scatter([pos[n][0] for n in sws], [pos[n][1] for n in sws], s=22, marker="s", c="#DD8452", label="switch", zorder=3)
        for k, c in EDGE_COLORS.items():
            if k in set(kinds.values()):
                ax.plot([], [], color=c, label=k)
        ax.set_title(f"{topo.name}: {topo.num_gpus} x {topo.device.name}")
        ax.set_axis_off()
        ax.legend(fontsize="small", loc="upper right")
        fig.tight_layout()
        save_figure(fig, Path(path), "--draw", dpi=120)
    finally:
        plt.close(fig)
    return path
