"""Plots layer (matplotlib, Agg backend): the only package that imports matplotlib.
Timelines, schedules, sweeps and topologies drawn from what the layers below return;
may import any of them, never commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simtrain.scenario.errors import SimtrainError


def save_figure(fig: Any, path: Path, option: str = "plot path", **kwargs: Any) -> Path:
    """fig.savefig with the output folder created, and a file-system failure (a folder
    in the way, no permission) turned into the one-line user error naming `option`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **kwargs)
    except OSError as e:
        raise SimtrainError(f"{option} {str(path)!r}: cannot write it ({e.strerror}); give a writable .png or .svg path") from None
    return path
