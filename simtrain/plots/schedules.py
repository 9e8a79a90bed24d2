"""Schedule plots. matplotlib is imported only under simtrain/plots/, with the Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from simtrain.plots import save_figure  # noqa: E402

from simtrain.schedule.explore import BubbleCurves  # noqa: E402


def plot_bubble_vs_microbatches(data: BubbleCurves, path: str | Path) -> Path:
    """Draw bubble fraction vs micro-batches per DP replica; the suffix picks PNG or SVG."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        from simtrain.scenario.errors import SimtrainError

        raise SimtrainError(f"plot path {str(path)!r}: unsupported format; end it with .png or .svg")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        styles = ["-", "--", "-.", ":"]
        markers = ["o", "s", "^", "D", "v", "x"]
        for i, (label, points) in enumerate(data.series.items()):
            if points:
                xs, ys = zip(*sorted(points))
                # schedules that coincide (gpipe/1f1b, bfs/llama3) stay visible through line styles;
                # constrained ones (interleaved) only have markers where they are valid
                ax.plot(xs, [100 * y for y in ys], linestyle=styles[i % len(styles)], marker=markers[i % len(markers)],
                        markersize=3.5, linewidth=1.4, label=label, alpha=0.9)
        ax.set_xlabel("micro-batches per data-parallel replica (M)")
        ax.set_ylabel("pipeline bubble (% of step)")
        ax.set_title(f"Bubble with uniform costs, free comm (pp={data.pp}, vp={data.vp})")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path
