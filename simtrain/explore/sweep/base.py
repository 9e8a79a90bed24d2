"""The base scenario of a sweep or search, as a plain (picklable) dict.

GPU count and global batch stay fixed over the sweep: `cluster.gpus` is pinned to the
base scenario's world size (unless swept) and `parallel.dp` set to 0 so each layout
derives DP from it (unless DP is swept: then the GPU count follows tp*cp*pp*dp);
`training.global_batch` is pinned to the base's (its derived dp*micro_batch when 0), so
more data parallelism means fewer micro-batches per replica, as in a real run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from simtrain.scenario.config import load_data, scenario_from_dict
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.layout import make_layout


def load_base(source: Any, overrides: Any, megatron: Any = None) -> tuple[dict[str, Any], str]:
    data, path = load_data(source, overrides, megatron)
    data.setdefault("name", Path(path).stem if path else "scenario")
    return data, path


def prepare_base(source: Any, overrides: Any, swept: list[str], megatron: Any = None) -> dict[str, Any]:
    """Base dict for the sweep: scenario (a name, path, dict or Scenario; Megatron flags)
    + overrides, GPUs and global batch pinned."""
    data, path = load_base(source, overrides, megatron)
    data = copy.deepcopy(data)
    base = scenario_from_dict(data, name=str(data["name"]), source=path)  # checks every key once
    cluster, parallel, training = (data.setdefault(k, {}) for k in ("cluster", "parallel", "training"))
    try:
        layout = make_layout(base)
        world, gb = layout.world, layout.global_batch
    except SimtrainError as e:
        if base.cluster.gpus <= 0 or (base.training.global_batch <= 0 and "training.global_batch" not in swept):
            raise SimtrainError(f"the base scenario's layout is invalid ({e}); fix it or set cluster.gpus and training.global_batch with --set") from None
        world, gb = base.cluster.gpus, base.training.global_batch
    if "parallel.dp" in swept:
        if "cluster.gpus" not in swept:
            cluster["gpus"] = 0
    else:
        parallel["dp"] = 0
        if "cluster.gpus" not in swept:
            cluster["gpus"] = world
    if "training.global_batch" not in swept:
        training["global_batch"] = gb
    data["_source"] = path
    return data


def point_scenario(base: dict[str, Any], values: dict[str, Any]):
    """The scenario of one point: the base dict with `values` (section.key -> value) set."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items() if k != "_source"}
    for key, value in values.items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    return scenario_from_dict(data, name=str(data.get("name", "scenario")), source=base.get("_source", ""))
