"""The Python API: what the CLI does, callable from a notebook (docs/api.md walks it).

    simulate(scenario, overrides)   one step -> Result (.to_dict(), .memory, .warnings, .records)
    sweep(scenario, grid)           every combination -> SweepResult (.rows, .best(), .to_dataframe())
    search(scenario, space=...)     the best layout -> SearchResult (.winner, .ranked, .counts)
    compare(a, b, ...)              two steps, MFU difference by cause -> Comparison (.text(), .to_dict())
    timeline(result, path)          Gantt chart of a simulated step (.png/.svg)
    trace(result, path)             Chrome/Perfetto trace (.json)
    load_scenario(scenario, ...)    the checked Scenario itself

A scenario is a catalog name or TOML path, a dict of TOML tables ({"model": {...},
"parallel": {...}}), a Scenario, or None (the default scenario; under Megatron flags a
neutral base). `overrides` are {"section.key": value} (Python values) or "section.key=value"
strings as --set takes them. `megatron_args` / `megatron_script` read Megatron-LM flags
as the CLI options do. Bad input raises SimtrainError with the CLI's one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from simtrain.scenario.errors import SimtrainError


def _megatron(megatron_args: str = "", megatron_script: str | Path = "") -> Any:
    if not (megatron_args and str(megatron_args).strip()) and not megatron_script:
        return None
    from simtrain.scenario.megatron_args import read

    return read(megatron_args, str(megatron_script) if megatron_script else "")


def load_scenario(scenario: Any = None, overrides: Any = (), *, megatron_args: str = "",
                  megatron_script: str | Path = "") -> Any:
    """The Scenario (frozen dataclasses, every value checked) of a name, path, dict or
    Scenario, with Megatron flags and overrides applied in the CLI's order."""
    from simtrain.scenario.config import load_scenario as _load

    return _load(scenario, overrides or (), megatron=_megatron(megatron_args, megatron_script))


def simulate(scenario: Any = None, overrides: Any = None, *, megatron_args: str = "", megatron_script: str | Path = "",
             progress: Callable[[float, int], None] | None = None, link_series: bool = False) -> Any:
    """Simulate one training step; returns a Result (simtrain.analysis.metrics): step_time_s,
    mfu, hfu, tflops_per_gpu, tokens_per_s, bubble_fraction, breakdown, per_stage, layout,
    memory, warnings, records, and to_dict() (what `simtrain run --json` prints).
    `link_series`: record the busiest links' load over time, for trace()'s link counters."""
    from simtrain.analysis.run import simulate as _simulate

    return _simulate(load_scenario(scenario, overrides, megatron_args=megatron_args, megatron_script=megatron_script),
                     progress=progress, link_series=link_series)


@dataclass
class SweepResult:
    """Rows of a sweep, one per layout, in grid order (the columns of `simtrain sweep`'s CSV)."""

    rows: list[dict[str, Any]]
    columns: list[str]
    swept: list[str]
    scenario: str = ""

    def best(self, k: int = 10) -> list[dict[str, Any]]:
        """The valid layouts that fit in memory, best MFU first."""
        from simtrain.explore.sweep.output import ranked

        return ranked(self.rows)[:k]

    def table(self, k: int = 10) -> str:
        """The table `simtrain sweep` prints."""
        from simtrain.explore.sweep.output import top_table

        return top_table(self.rows, self.swept, k)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (pandas is optional: pip install "simtrain[pandas]")."""
        try:
            import pandas as pd
        except ImportError:
            raise SimtrainError('to_dataframe: pandas is not installed; pip install "simtrain[pandas]", '
                                "or use .rows (a list of dicts)") from None
        return pd.DataFrame([{c: r.get(c) for c in self.columns} for r in self.rows], columns=self.columns)

    def to_csv(self, path: str | Path) -> Path:
        from simtrain.explore.sweep.output import write_csv

        write_csv(str(path), self.rows, self.columns, opt="to_csv")
        return Path(path)


def sweep(scenario: Any = None, grid: dict[str, Any] | None = None, overrides: Any = None, *, jobs: int = 1,
          executor: str = "local", address: str = "", skip_oom: bool = False, progress: bool = False,
          megatron_args: str = "", megatron_script: str | Path = "") -> SweepResult:
    """Simulate every combination of `grid` ({"parallel.tp": [1, 2, 4], ...}) on top of the
    scenario, keeping its GPU count and global batch (as `simtrain sweep`). `jobs`: local
    processes (0: every core)."""
    from simtrain.explore.sweep import Task, expand, prepare_base, run_tasks
    from simtrain.explore.sweep.evaluate import columns
    from simtrain.explore.sweep.grid import axis_from_values
    from simtrain.explore.sweep.progress import Progress

    if not grid:
        raise SimtrainError('sweep: no grid given; pass e.g. grid={"parallel.tp": [1, 2, 4, 8]}')
    axes = [axis_from_values(k, v) for k, v in grid.items()]
    swept = [k for k, _ in axes]
    base = prepare_base(scenario, overrides or (), swept, megatron=_megatron(megatron_args, megatron_script))
    tasks = [Task(i, v) for i, v in enumerate(expand(axes))]
    bar = Progress(len(tasks), "sweep", enabled=progress)
    rows = run_tasks(base, tasks, jobs, executor, address, opts={"simulate_unfit": not skip_oom}, progress=bar)
    bar.close()
    return SweepResult(rows, columns(swept), swept, str(base.get("name", "")))


@dataclass
class SearchResult:
    """Every candidate with its status, the simulated ones best first, and the counts."""

    rows: list[dict[str, Any]]
    ranked: list[dict[str, Any]]
    counts: dict[str, int]
    space: Any = None

    @property
    def winner(self) -> dict[str, Any] | None:
        return self.ranked[0] if self.ranked else None

    def set_args(self) -> str:
        """The winner as --set options for `simtrain run`."""
        from simtrain.explore.search import set_args

        return set_args(self.ranked[0]) if self.ranked else ""


def search(scenario: Any = None, *, top: int = 5, space: dict[str, Any] | None = None, overrides: Any = None,
           jobs: int = 1, executor: str = "local", address: str = "", progress: bool = False,
           megatron_args: str = "", megatron_script: str | Path = "") -> SearchResult:
    """The best layouts for the scenario's model, GPUs and global batch (`simtrain search`).
    `space` narrows or widens the dimensions: tp, cp, pp, vp, micro_batch, recompute,
    sequence_parallel, schedules (each a list of values)."""
    import dataclasses

    from simtrain.explore.search import Space, default_space
    from simtrain.explore.search import search as _search
    from simtrain.explore.sweep import prepare_base
    from simtrain.explore.sweep.base import point_scenario
    from simtrain.hardware.load import load_topology

    if top < 1:
        raise SimtrainError(f"search: top = {top}: must be at least 1")
    base = prepare_base(scenario, overrides or (), [], megatron=_megatron(megatron_args, megatron_script))
    s = point_scenario(base, {})
    world = base["cluster"]["gpus"]
    topo = load_topology(s.cluster.topology, world, s.cluster.device)
    sp = default_space(s, world, topo.gpus_per_node)
    valid = [f.name for f in dataclasses.fields(Space)]
    changes = {}
    for k, v in (space or {}).items():
        if k not in valid:
            from simtrain.scenario.fields import _suggest

            raise SimtrainError(f"search: space key {k!r}: {_suggest(k, valid)}")
        changes[k] = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    sp = dataclasses.replace(sp, **changes)
    pinned = s.parallel.first_stage_layers >= 0 or s.parallel.last_stage_layers >= 0
    res = _search(base, sp, top, jobs, executor, address, progress=progress, layers=s.model.num_hidden_layers,
                  world=world, pinned_ends=pinned)
    return SearchResult(res.rows, res.ranked, res.counts, sp)


def compare(a: Any = None, b: Any = None, *, overrides: Any = None, a_overrides: Any = None,
            b_overrides: Any = None) -> Any:
    """Simulate A and B (B defaults to A, changed by `b_overrides`) and attribute the MFU
    difference to its causes (`simtrain compare`); returns a Comparison with text() and
    to_dict()."""
    from simtrain.analysis.compare import compare_results

    both = _as_list(overrides)
    over_a, over_b = both + _as_list(a_overrides), both + _as_list(b_overrides)
    b = a if b is None else b
    if b is a and over_a == over_b:
        raise SimtrainError("compare: A and B are the same; give b or b_overrides, e.g. b_overrides={'parallel.dp': 128}")
    ra, rb = simulate(a, over_a), simulate(b, over_b)
    return compare_results(_label(ra.scenario, over_a), ra, _label(rb.scenario, over_b), rb)


def _as_list(overrides: Any) -> list[Any]:
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return list(overrides.items())
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _label(name: str, overrides: list[Any]) -> str:
    return " ".join([name] + [f"--set {o if isinstance(o, str) else f'{o[0]}={o[1]}'}" for o in overrides])


def timeline(result: Any, path: str | Path, title: str | None = None) -> Path:
    """Draw the step's Gantt chart (one row per pipeline stage; per device in per-rank mode,
    at most 64 rows) to a .png or .svg file."""
    from simtrain.commands.run import device_names, timeline_devices
    from simtrain.plots.timeline import plot_timeline, timeline_rows

    if not str(path).lower().endswith((".png", ".svg")):
        raise SimtrainError(f"timeline {str(path)!r}: unsupported format; end the name with .png or .svg")
    plan = result.extra["plan"]
    rows = timeline_devices(plan, result)
    title = title or (f"{result.scenario}: {result.schedule} — step {result.step_time_s:.2f} s, "
                      f"MFU {100 * result.mfu:.1f}%")
    shares = ({k: v / result.step_time_s for k, v in result.breakdown.items()}
              if len(rows) == len(plan.simulated) and result.step_time_s > 0 else None)  # the report's breakdown
    plot_timeline(timeline_rows(result.records, rows), str(path), title, device_names(plan), None, shares)
    return Path(path)


def trace(result: Any, path: str | Path) -> Path:
    """Write the step as a Chrome/Perfetto trace (.json; open in ui.perfetto.dev)."""
    from simtrain.analysis.trace import write_trace
    from simtrain.commands.run import device_names

    if not str(path).lower().endswith(".json"):
        raise SimtrainError(f"trace {str(path)!r}: unsupported format; end the name with .json")
    plan = result.extra["plan"]
    return write_trace(path, plan, result.records, device_names(plan), {"scenario": result.scenario},
                       result.extra.get("_link_series"))

