"""Schedule plots. matplotlib is imported only under simtrain/plots/, with the Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from simtrain.plots import save_figure  # noqa: E402

from simtrain.schedule.explore import BubbleCurves, chart_lines  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
STYLES = ["-", "--", "-.", ":"]


def bubble_figure(data: BubbleCurves):
    """The figure and its axes: one line per schedule (identical ones merged), drawn only
    through the micro-batch counts where the schedule runs (gaps where it cannot), each with
    its own marker; the legend sits outside the plotting area."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, line in enumerate(chart_lines(data)):
        ys = [float("nan") if y is None else 100 * y for y in line.ys]
        # hollow markers, each line's smaller than the one before: coinciding points of
        # different schedules stay visible as nested shapes
        ax.plot(line.xs, ys, linestyle=STYLES[i % len(STYLES)], marker=MARKERS[i % len(MARKERS)],
                markersize=max(3.5, 10.0 - 1.3 * i), fillstyle="none", markeredgewidth=1.3, linewidth=1.4,
                label=line.label, alpha=0.9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # M is a count
    ax.set_xlabel("micro-batches per data-parallel replica (M)")
    ax.set_ylabel("pipeline bubble (% of step)")
    ax.set_title(f"Pipeline bubble, {data.basis} (pp={data.pp}, vp={data.vp})", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              title="schedule (gaps: cannot run)", title_fontsize="small")
    fig.tight_layout()
    return fig, ax


def plot_bubble_vs_microbatches(data: BubbleCurves, path: str | Path) -> Path:
    """Draw bubble fraction vs micro-batches per DP replica; the suffix picks PNG or SVG."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        from simtrain.scenario.errors import SimtrainError

        raise SimtrainError(f"plot path {str(path)!r}: unsupported format; end it with .png or .svg")
    fig, _ = bubble_figure(data)
    try:
        save_figure(fig, path, "--plot")
    finally:
        plt.close(fig)
    return path
