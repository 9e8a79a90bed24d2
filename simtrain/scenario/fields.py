"""One TOML table checked against a frozen dataclass: unknown keys are rejected with a
suggestion, values must have the field's type (finite numbers, whole numbers, booleans,
lists as tuples) and string fields with a fixed set of values must use one of them."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
import typing
from dataclasses import fields
from typing import Any, get_type_hints

from simtrain.scenario.errors import SimtrainError, bad

CHOICES: dict[str, tuple[str, ...]] = {
    "model.mlp": ("gated", "plain"),
    "model.position_embedding": ("rope", "learned", "alibi"),
    "model.norm": ("rmsnorm", "layernorm"),
    "parallel.recompute": ("none", "selective", "op-selective", "full"),
    "parallel.recompute_modules": ("core_attn", "layernorm", "mla_up_proj", "mlp", "moe_act"),
    "parallel.cp_algo": ("allgather", "ring"),
    "parallel.attention_kernel": ("fa2", "cudnn", "fa3", "fa1", "triton", "xformers"),
    "engine.mode": ("symmetric", "per-rank"),
    "engine.detail": ("auto", "layer", "action"),
    "engine.comm": ("network", "free"),
    "engine.collective_algo": ("auto", "ring", "tree", "hierarchical", "torus"),
    "training.precision": ("bf16", "fp16", "fp8"),
    "training.fp8_recipe": ("delayed", "current", "blockwise", "mxfp8"),
    "training.grad_precision": ("fp32", "bf16", "fp16"),
}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid keys: {', '.join(valid)}"


def _coerce(path: str, value: Any, typ: type, default: Any = None) -> Any:
    if typing.get_origin(typ) is tuple:  # TOML arrays, kept as tuples so scenarios stay hashable
        inner = typing.get_args(typ)[0]
        if not isinstance(value, (list, tuple)):
            raise bad(path, value, "expected a list", f"write {path.split('.')[-1]} = [ ... ]")
        items = tuple(_coerce(f"{path}[{i}]", v, inner) for i, v in enumerate(value))
        bad_items = [v for v in items if path in CHOICES and v not in CHOICES[path]]
        if bad_items:
            raise bad(path, list(value), f"{bad_items[0]!r} is not a valid choice", f"use some of {', '.join(CHOICES[path])}")
        return items
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad(path, value, "expected true or false", f"write {path.split('.')[-1]} = true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad(path, value, "expected a whole number", f"write e.g. {path.split('.')[-1]} = 8")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(path, value, "expected a number", f"write e.g. {path.split('.')[-1]} = 1.5")
        if not math.isfinite(value):  # TOML allows nan and inf; no input field means them
            # the field's default is a value it takes (1.5 is not, for a share or a probability)
            example = default if isinstance(default, (int, float)) and not isinstance(default, bool) else 1.5
            raise bad(path, value, "must be a finite number", f"write e.g. {path.split('.')[-1]} = {example:g}"
                      + (" (its default)" if example is default else ""))
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise bad(path, value, "expected a string", f'write {path.split(".")[-1]} = "..." in quotes')
        if path in CHOICES and value not in CHOICES[path]:
            raise bad(path, value, "not a valid choice", f"use one of {', '.join(CHOICES[path])}")
        return value
    return value


@functools.lru_cache(maxsize=None)
def _schema(cls: type) -> tuple[dict[str, Any], list[str]]:
    """A dataclass's field types and names (resolving the annotations is slow; sweeps and
    searches parse thousands of scenarios)."""
    return get_type_hints(cls), [f.name for f in fields(cls)]


def parse_dataclass(cls: type, data: dict[str, Any], prefix: str, base: Any = None) -> Any:
    """Check keys and value types of one TOML table against a frozen dataclass."""
    hints, valid = _schema(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            raise SimtrainError(f"unknown key {prefix}.{key} = {value!r}: {_suggest(key, valid)}")
        base = base if base is not None else cls()
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key], getattr(base, key, None))
    base = base if base is not None else cls()
    return dataclasses.replace(base, **kwargs)



def _parse_value(text: str) -> Any:
    """`--set` values are TOML values; bare words that are not valid TOML are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text

