"""`--grid section.key=v1,v2,...`: parsing with strict keys and typed values, expansion."""

from __future__ import annotations

import itertools
from dataclasses import fields
from typing import Any

from simtrain.scenario.config import SECTIONS, STACK_SECTION
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.fields import _parse_value, _suggest, parse_dataclass
from simtrain.scenario.stack import Stack, check_stack

# the scenario's sections, and [stack] (overrides of its software stack's values)
GRID_SECTIONS: dict[str, type] = {**SECTIONS, STACK_SECTION: Stack}

Axis = tuple[str, tuple[Any, ...]]  # ("parallel.tp", (1, 2, 4, 8))


def parse_axis(spec: str, opt: str = "--grid") -> Axis:
    key, sep, raw = spec.partition("=")
    key = key.strip()
    example = f"write e.g. {opt} parallel.tp=1,2,4,8"
    if not sep or not key or not raw.strip():
        raise SimtrainError(f"{opt} {spec!r}: expected section.key=v1,v2,...; {example}")
    section, dot, name = key.partition(".")
    if not dot or section not in GRID_SECTIONS:
        raise SimtrainError(f"{opt} {spec!r}: unknown section {section!r}; {_suggest(section, list(GRID_SECTIONS))}")
    if section == "device":  # a key table, not a dataclass (simtrain.scenario.device_keys)
        return axis_from_values(key, [_parse_value(t.strip()) for t in raw.split(",")], opt)
    cls = GRID_SECTIONS[section]
    valid = [f.name for f in fields(cls)]
    if name not in valid:
        raise SimtrainError(f"{opt} {spec!r}: unknown key {key}; {_suggest(name, valid)}")
    values = []
    for text in raw.split(","):
        text = text.strip()
        if not text:
            raise SimtrainError(f"{opt} {spec!r}: empty value in the list; separate values by single commas")
        v = _parse_value(text)
        try:
            v = getattr(_typed(cls, section, name, v), name)
        except SimtrainError as e:
            raise SimtrainError(f"{opt} {spec!r}: {e}") from None
        if v in values:
            raise SimtrainError(f"{opt} {spec!r}: value {text!r} appears twice; list each value once")
        values.append(v)
    return key, tuple(values)


def _typed(cls: type, section: str, name: str, value: Any) -> Any:
    """The section's dataclass with `name` = `value`, typed and checked (a stack's choices
    and ranges as its file's are)."""
    out = parse_dataclass(cls, {name: value}, section)
    return check_stack(out, section) if cls is Stack else out


def axis_from_values(key: str, values: Any, opt: str = "grid") -> Axis:
    """An axis from Python values (the API's {"parallel.tp": [1, 2, 4]}), checked as
    `--grid` checks its text: a known key, values of the field's type, no repeats."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        values = [values]
    section, dot, name = str(key).partition(".")
    if not dot or section not in GRID_SECTIONS:
        raise SimtrainError(f"{opt} {key!r}: unknown section {section!r}; {_suggest(section, list(GRID_SECTIONS))}")
    out = []
    for v in values:
        if section == "device":
            from simtrain.scenario.device_keys import check_device_table

            check_device_table({name: v})
        else:
            cls = GRID_SECTIONS[section]
            valid = [f.name for f in fields(cls)]
            if name not in valid:
                raise SimtrainError(f"{opt} {key!r}: unknown key {key}; {_suggest(name, valid)}")
            try:
                v = getattr(_typed(cls, section, name, v), name)
            except SimtrainError as e:
                raise SimtrainError(f"{opt} {key!r}: {e}") from None
        if v in out:
            raise SimtrainError(f"{opt} {key!r}: value {v!r} appears twice; list each value once")
        out.append(v)
    if not out:
        raise SimtrainError(f"{opt} {key!r}: no values; give a list such as [1, 2, 4]")
    return str(key), tuple(out)


def parse_grid(specs: list[str], opt: str = "--grid") -> list[Axis]:
    axes = [parse_axis(s, opt) for s in specs]
    seen: set[str] = set()
    for key, _ in axes:
        if key in seen:
            raise SimtrainError(f"{opt} {key}: given twice; put all values in one {opt} {key}=a,b,c")
        seen.add(key)
    return axes


def expand(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination, the last axis varying fastest."""
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]
