"""Accelerators as TOML: the keys of a devices/*.toml file and of a scenario's `[device]`
table, their units, and the checks on their values. One table, `DEVICE_KEYS`, maps each
key to a field of `simtrain.hardware.devices.Device` (the in-code representation, in
seconds, bytes and FLOP/s) with the conversion from the unit in the key's name:

    value in code = value in the file * multiply / divide

(a division by 1e6 rather than a multiplication by 1e-6, so that e.g. 4 us is exactly the
float 4e-6). A field added to `Device` needs one line here (tests/test_devices.py checks
that every field has a key).

A `[device]` table in a scenario changes the device the topology (or `cluster.device`)
names, key by key, e.g. `--set device.hbm_gbytes_per_s=8000`; `name` renames the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import _suggest

TILES = "tiles"  # type tag: [[tile_m, tile_n, relative efficiency], ...]

# key: (Device field, type, multiply, divide, check)
#   check: "pos" > 0, "frac" in (0, 1], "nonneg" >= 0, "" none
DEVICE_KEYS: dict[str, tuple[str, Any, float, float, str]] = {
    "name": ("name", str, 1, 1, ""),
    "family": ("family", str, 1, 1, ""),  # measured attention curves: "hopper", "ampere", "blackwell", "blackwell_ultra"; "" or "tpu": the constants
    "peak_tflops": ("peak_flops", float, 1e12, 1, "pos"),  # dense BF16, 1e12 FLOP/s
    "hbm_gbytes_per_s": ("hbm_bytes_per_s", float, 1e9, 1, "pos"),  # 1e9 B/s
    "memory_gib": ("memory_bytes", float, 2**30, 1, "pos"),  # 2**30 B (as nvidia-smi reports)
    "memory_gb": ("memory_bytes", float, 1e9, 1, "pos"),  # 1e9 B (as datasheets print)
    "sms": ("sms", int, 1, 1, "pos"),  # streaming multiprocessors / compute units / matrix units
    "gemm_tiles": ("gemm_tiles", TILES, 1, 1, ""),
    "gemm_max_efficiency": ("gemm_max_efficiency", float, 1, 1, "frac"),
    "gemm_k_half": ("gemm_k_half", int, 1, 1, "pos"),
    "attention_fwd_efficiency": ("attention_fwd_efficiency", float, 1, 1, "frac"),
    "attention_bwd_efficiency": ("attention_bwd_efficiency", float, 1, 1, "frac"),
    "memory_efficiency": ("memory_efficiency", float, 1, 1, "frac"),
    "kernel_overhead_us": ("kernel_overhead_s", float, 1, 1e6, "nonneg"),  # microseconds
    "sustained_fraction": ("sustained_fraction", float, 1, 1, "frac"),
    "gemm_misaligned_factor": ("gemm_misaligned_factor", float, 1, 1, "frac"),  # share of the aligned rate
    "peak_fp8_tflops": ("peak_fp8_flops", float, 1e12, 1, "nonneg"),  # dense FP8, 1e12 FLOP/s; 0: none
    "gemm_fp8_max_efficiency": ("gemm_fp8_max_efficiency", float, 1, 1, "nonneg"),  # of the FP8 peak
}
CATALOG_ONLY = ("aliases", "description")  # bookkeeping keys of a devices/*.toml file
FAMILIES = ("hopper", "ampere", "blackwell", "blackwell_ultra", "tpu", "")


def _number(path: str, value: Any, typ: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(path, value, "expected a finite number", f"write e.g. {path.rsplit('.', 1)[-1]} = 1")
    if typ is int:
        if not float(value).is_integer():
            raise bad(path, value, "expected a whole number", f"write e.g. {path.rsplit('.', 1)[-1]} = 128")
        return int(value)
    return value


def _check(path: str, value: Any, check: str) -> None:
    if check == "pos" and value <= 0:
        raise bad(path, value, "must be positive", "give the datasheet or measured value")
    if check == "frac" and not 0 < value <= 1:
        raise bad(path, value, "must be in (0, 1]: a fraction of the peak", "give e.g. 0.8")
    if check == "nonneg" and value < 0:
        raise bad(path, value, "must be zero or positive", "give e.g. 4")


def _tiles(path: str, value: Any) -> tuple[tuple[int, int, float], ...]:
    hint = "write e.g. gemm_tiles = [[128, 256, 1.0], [128, 128, 0.93]]"
    if not isinstance(value, (list, tuple)) or not value:
        raise bad(path, value, "expected a list of [tile_m, tile_n, efficiency]", hint)
    out = []
    for i, t in enumerate(value):
        if not isinstance(t, (list, tuple)) or len(t) != 3:
            raise bad(f"{path}[{i}]", t, "expected [tile_m, tile_n, efficiency]", hint)
        m, n = (_number(f"{path}[{i}]", x, int) for x in t[:2])
        eff = _number(f"{path}[{i}]", t[2], float)
        if m <= 0 or n <= 0 or not 0 < eff <= 1:
            raise bad(f"{path}[{i}]", list(t), "tile sizes must be positive and the efficiency in (0, 1]", hint)
        out.append((m, n, float(eff)))
    return tuple(out)


def check_device_table(raw: Any, prefix: str = "device", catalog_file: bool = False) -> dict[str, Any]:
    """Check one device table (a devices/*.toml file or a scenario's [device]); return it
    with lists as tuples (hashable), keys as given. One line per problem."""
    if not isinstance(raw, dict):
        raise bad(prefix, raw, "expected a table", f"write [{prefix}] followed by key = value lines")
    valid = list(DEVICE_KEYS) + (list(CATALOG_ONLY) if catalog_file else [])
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}.{key}"
        if key not in valid:
            hint = "" if catalog_file or key not in CATALOG_ONLY else "; aliases belong in a devices/*.toml file"
            raise SimtrainError(f"unknown key {path} = {value!r}: {_suggest(key, valid)}{hint}")
        if key == "aliases":
            if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
                raise bad(path, value, "expected a list of names", 'write aliases = ["H100"]')
            out[key] = tuple(value)
            continue
        if key == "description":
            out[key] = str(value)
            continue
        _, typ, _, _, check = DEVICE_KEYS[key]
        if typ is str:
            if not isinstance(value, str):
                raise bad(path, value, "expected a string", f'write {key} = "..." in quotes')
            if key == "family" and value not in FAMILIES:
                raise bad(path, value, "not an attention family", f"use one of {', '.join(repr(f) for f in FAMILIES)}")
            out[key] = value
        elif typ == TILES:
            out[key] = _tiles(path, value)
        else:
            v = _number(path, value, typ)
            _check(path, v, check)
            out[key] = v
    if "memory_gib" in out and "memory_gb" in out:
        raise bad(f"{prefix}.memory_gb", out["memory_gb"], "given together with memory_gib", "keep one of the two")
    return out


def device_fields(table: dict[str, Any]) -> dict[str, Any]:
    """A checked table's values as `Device` fields, converted to seconds, bytes and FLOP/s."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in CATALOG_ONLY:
            continue
        field, typ, mul, div, _ = DEVICE_KEYS[key]
        out[field] = value * mul / div if typ is float else value
    return out


@dataclass(frozen=True)
class DeviceTable:
    """A scenario's [device] table: the keys given, checked, as sorted (key, value) pairs."""

    items: tuple[tuple[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def device_table(raw: Any) -> DeviceTable:
    return DeviceTable(tuple(sorted(check_device_table(raw).items())))
