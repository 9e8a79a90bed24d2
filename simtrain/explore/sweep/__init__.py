"""Layout sweeps: expand a grid of scenario overrides, simulate every point (in parallel
or on Ray), collect one flat row per layout. `simtrain sweep` and `simtrain search` use it.
Part of the explore layer: may import every layer below it, never plots or commands.

    grid.py       --grid parsing and expansion (strict keys, typed values)
    base.py       the base scenario as a dict, with GPUs and global batch pinned
    evaluate.py   one point -> one row (validity, memory, metrics); worker-level caches
    bound.py      one search candidate -> its MFU bound, without simulating (search phase 1)
    executors.py  serial, local processes, Ray
    progress.py   a tiny progress bar on stderr
    output.py     CSV, Parquet, top-k table
"""

from simtrain.explore.sweep.base import prepare_base
from simtrain.explore.sweep.evaluate import COLUMNS, Task, evaluate
from simtrain.explore.sweep.executors import run_tasks
from simtrain.explore.sweep.grid import expand, parse_grid

__all__ = ["COLUMNS", "Task", "evaluate", "expand", "parse_grid", "prepare_base", "run_tasks"]
