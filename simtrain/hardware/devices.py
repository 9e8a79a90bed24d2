"""Accelerators: the `Device` dataclass (peak dense BF16 FLOP/s, HBM bandwidth and capacity,
and the kernel constants of the compute model, simtrain.workload.compute), loaded from the
devices/ catalog (one TOML file per device, every value with its source beside it; the
keys and their units: simtrain.scenario.device_keys) and changed by a scenario's [device]
table.

GEMM efficiency (simtrain.workload.compute): `gemm_max_efficiency` and `gemm_k_half` are
fitted on 328 aligned bf16 GEMMs measured on this project's lent H200 (2026-11-30,
tools/kernels/h200_2026-11-30_kernels.jsonl): max 0.78, K_half 256, 6% mean absolute
error, the typical transformer shape rather than the best one (8192^3: 724 TFLOP/s in the
model, 769 measured). Other devices say in their file how theirs follow from a
measurement. Streaming kernels: `memory_efficiency` is the share of the datasheet HBM rate
a device-to-device copy reaches; `kernel_overhead_s` the GPU time per kernel. Attention:
GPUs of a `family` with measured curves (simtrain/data/attention.toml) use them; the
constant efficiencies apply elsewhere (TPUs, a device without a family). The share a
training step sustains is the software stack's (stacks/*.toml), multiplied in by the plan.

FP8 (training.precision = "fp8", simtrain.workload.fp8): `peak_fp8_flops`, the dense FP8
peak from the datasheets (H100/H200/H800 SXM 1,979 TFLOP/s, B200 4.5 PFLOP/s; 0 where there
are no FP8 tensor cores: A100, TPUs, refused with one line), and `gemm_fp8_max_efficiency`:
FP8 GEMMs reach a smaller share of their peak than bf16 ones of theirs. Bekman's MAMF table
(tools/published/kernels/gemm_mamf_mlengineering.csv) has H100 SXM fp8_e4m3fn 1,402.6 of
1,979 (70.9%) against bf16 794.5 of 989 (80.3%), B200 3,432.5 of 4,500 (76.3%) against
1,745 of 2,250 (77.6%): the bf16 `gemm_max_efficiency` times those ratios, 0.78 x 0.883 =
0.689 (Hopper), 0.73 x 0.983 = 0.718 (B200). An FP8 kernel's K loop runs twice the MACs per
cycle, so its fixed prologue/epilogue is worth twice the K: K_half doubles. Recorded, not
used: Transformer Engine's GEMM profile of a layer on an H200 NVL (600 W; pre-quantized, FP8
current scaling 16.785 ms against BF16 31.968 ms, the BF16 reproduced to 0.05% at the NVL's
peaks) puts Hopper FP8 12% faster than this model (0.771); taken instead, the H100 SXM FP8
training runs of the validation came out 5-9 points too fast (zero-shot 7.5 -> 8.3%).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from simtrain.scenario.device_keys import DEVICE_KEYS, DeviceTable, check_device_table, device_fields
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.files import available, read_toml, suggest


@dataclass(frozen=True)
class Device:
    name: str
    peak_flops: float  # dense BF16 FLOP/s
    hbm_bytes_per_s: float
    memory_bytes: float
    sms: int  # streaming multiprocessors (or matrix units) that GEMM tiles are spread over
    gemm_tiles: tuple[tuple[int, int, float], ...]  # (tile_m, tile_n, relative efficiency)
    gemm_max_efficiency: float  # fraction of peak of a large GEMM with full waves
    gemm_k_half: int  # K at which pipeline prologue/epilogue halve efficiency (see compute)
    attention_fwd_efficiency: float  # FlashAttention forward, fraction of peak
    attention_bwd_efficiency: float  # FlashAttention backward, fraction of peak
    memory_efficiency: float  # achievable fraction of HBM bandwidth for streaming kernels
    kernel_overhead_s: float  # fixed cost per kernel (launch + tail), seconds
    # Share of the benchmark tensor throughput sustained inside a full training step
    # (power- and thermally-limited clocks with HBM, NVLink and NICs busy at once, SMs
    # shared with communication kernels). 1.0 = as benchmarked in isolation.
    sustained_fraction: float = 1.0
    # A GEMM with a dimension that is not a multiple of 8 elements runs without the aligned
    # (TMA / vectorised) kernels: this share of the aligned rate.
    gemm_misaligned_factor: float = 1.0
    family: str = ""  # GPU family of the measured attention curves ("hopper", "ampere", "blackwell"); "": none
    # Dense FP8 (E4M3/E5M2) tensor-core peak, FLOP/s; 0: no FP8 tensor cores (A100, TPUs).
    peak_fp8_flops: float = 0.0
    # `gemm_max_efficiency` of FP8 GEMMs (fraction of the FP8 peak); see FP8 above.
    gemm_fp8_max_efficiency: float = 0.0


# --- the devices/ catalog -----------------------------------------------------------------

_REQUIRED = [f.name for f in dataclasses.fields(Device) if f.default is dataclasses.MISSING and f.name != "name"]


def device_from_file(path: Path) -> tuple[Device, tuple[str, ...]]:
    """One devices/*.toml file -> (Device named after the file, its aliases)."""
    where = f"devices/{path.name}"
    table = check_device_table(read_toml(path, where), where, catalog_file=True)
    if table.get("name", path.stem) != path.stem:
        raise bad(f"{where}: name", table["name"], "differs from the file name",
                  f"drop the name key or rename the file to {table['name']}.toml")
    fields = device_fields(table)
    missing = [k for k, (f, *_rest) in DEVICE_KEYS.items() if f in _REQUIRED and f not in fields and k != "memory_gb"]
    if missing:
        raise SimtrainError(f"{where}: missing key {missing[0]}; every device file gives "
                            f"{', '.join(k for k in DEVICE_KEYS if k not in ('name', 'memory_gb'))}")
    return Device(**{**fields, "name": path.stem}), table.get("aliases", ())


@lru_cache(maxsize=256)
def _load_file(path: str, _mtime_ns: int) -> tuple[Device, tuple[str, ...]]:
    dev, aliases = device_from_file(Path(path))
    _FAMILIES[dev.name] = dev.family
    return dev, aliases


def _files(near: str | Path | None) -> dict[str, Path]:
    return {name: root.path / f"{name}.toml" for name, root in available("devices", near).items()}


def device_files(near: str | Path | None = None) -> dict[str, Path]:
    """The catalogs' device files by name (a user's overriding a shipped one), unread."""
    return _files(near)


def read_device_file(path: Path) -> tuple[Device, tuple[str, ...]]:
    """One device file, read (once per modification time): the device and its aliases."""
    return _load_file(str(path), path.stat().st_mtime_ns)


def load_catalog(near: str | Path | None = None) -> tuple[dict[str, Device], dict[str, str]]:
    """Every device the catalogs hold ({name: Device}, {alias: name}); a user's file
    overrides a shipped one of the same name (simtrain.scenario.files). Each file is read
    once per modification time."""
    devices: dict[str, Device] = {}
    aliases: dict[str, str] = {}
    for name, p in _files(near).items():
        devices[name], alias = _load_file(str(p), p.stat().st_mtime_ns)
        for a in alias:
            aliases.setdefault(a, name)
    return devices, aliases


def get_device(name: str, field: str = "cluster.device", near: str | Path | None = None) -> Device:
    """The device of that name (a file of the devices/ catalog, read alone) or alias."""
    files = _files(near)
    if name in files:
        return _load_file(str(files[name]), files[name].stat().st_mtime_ns)[0]
    devices, aliases = load_catalog(near)
    if name not in aliases:
        raise bad(field, name, "unknown device", suggest(name, list(devices) + list(aliases), "devices", "device", len(devices)))
    return devices[aliases[name]]


class _Catalog(Mapping):
    """`CATALOG[name]`: the devices the catalogs hold now, by name (read on use)."""

    def __getitem__(self, name: str) -> Device:
        return load_catalog()[0][name]

    def __iter__(self) -> Iterator[str]:
        return iter(load_catalog()[0])

    def __len__(self) -> int:
        return len(load_catalog()[0])


CATALOG: Mapping[str, Device] = _Catalog()

# `FAMILY[name]`: the attention-curve family of every device built so far by name (catalog
# files and [device] variants register theirs), for code that has a device's name only.
_FAMILIES: dict[str, str] = {}


class _Families(Mapping):
    def __getitem__(self, name: str) -> str:
        if name not in _FAMILIES:
            load_catalog()
        return _FAMILIES[name]

    def __iter__(self) -> Iterator[str]:
        load_catalog()
        return iter(dict(_FAMILIES))

    def __len__(self) -> int:
        load_catalog()
        return len(_FAMILIES)


FAMILY: Mapping[str, str] = _Families()


def apply_device_table(dev: Device, table: DeviceTable) -> Device:
    """`dev` changed by a scenario's [device] table; without `name` the result is named
    after the base and the keys it changes. Attention efficiencies given there replace the
    family's measured curves (family ""), unless the table names a family itself."""
    if not table:
        return dev
    given = table.as_dict()
    fields: dict[str, Any] = device_fields(given)
    if {"attention_fwd_efficiency", "attention_bwd_efficiency"} & set(given) and "family" not in given:
        fields["family"] = ""  # the given constants replace the measured curves, or they would do nothing
    if "name" not in given:
        fields["name"] = f"{dev.name} with " + ", ".join(f"{k}={_fmt(v)}" for k, v in table.items)
    out = dataclasses.replace(dev, **fields)
    _FAMILIES[out.name] = out.family
    return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def scaled(dev: Device, **changes: float) -> Device:
    """A what-if copy of a device (e.g. a slower straggler)."""
    return dataclasses.replace(dev, **changes)
