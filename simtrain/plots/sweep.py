"""Sweep plots: an MFU heatmap over two swept keys (best over the others), or MFU
against one swept key. Only rows that are valid, fit in memory and were simulated count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from simtrain.plots import save_figure  # noqa: E402


def _label(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def best_by(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple, float]:
    """Best MFU for each combination of `keys`' values (fitting, simulated rows only)."""
    best: dict[tuple, float] = {}
    for r in rows:
        if not (r.get("valid") and r.get("fits_in_memory") and r.get("simulated")):
            continue
        k = tuple(r.get(x) for x in keys)
        best[k] = max(best.get(k, 0.0), r["mfu"])
    return best


def plot_sweep(rows: list[dict[str, Any]], axes: list[tuple[str, tuple]], path: str, title: str = "") -> None:
    """`axes`: one or two (key, values) pairs in the order to draw them (x, then y)."""
    if len(axes) == 1:
        (key, values), = axes
        best = best_by(rows, [key])
        xs = [_label(v) for v in values]
        ys = [100 * best[(v,)] if (v,) in best else float("nan") for v in values]
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(xs) + 3), 4))
        ax.plot(range(len(xs)), ys, marker="o")
        for i, y in enumerate(ys):
            ax.annotate("no fit" if y != y else f"{y:.1f}", (i, 0 if y != y else y), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(key)
        ax.set_ylabel("best MFU (%)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    else:
        (kx, vx), (ky, vy) = axes[:2]
        best = best_by(rows, [kx, ky])
        import numpy as np

        grid = np.full((len(vy), len(vx)), np.nan)
        for i, y in enumerate(vy):
            for j, x in enumerate(vx):
                if (x, y) in best:
                    grid[i, j] = 100 * best[(x, y)]
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(vx) + 3), max(3.5, 0.6 * len(vy) + 2)))
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower", aspect="auto")
        finite = grid[~np.isnan(grid)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for i in range(len(vy)):
            for j in range(len(vx)):
                v = grid[i, j]
                light = np.isnan(v) or (hi > lo and (v - lo) / (hi - lo) > 0.6)
                ax.text(j, i, "—" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="black" if light else "white")
        ax.text(1.0, -0.18, "— : no valid layout fits in memory", transform=ax.transAxes, ha="right", fontsize=7)
        ax.set_xticks(range(len(vx)), [_label(v) for v in vx])
        ax.set_yticks(range(len(vy)), [_label(v) for v in vy])
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
        fig.colorbar(im, ax=ax, label="best MFU (%) over the other keys")
    ax.set_title(title or "sweep", fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, Path(path), "--plot", dpi=120)
    finally:
        plt.close(fig)
