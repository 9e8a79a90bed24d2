"""Units. Inside the code everything is seconds, bytes, FLOP and FLOP/s.

Input files carry the unit in the field name and are converted once, here:
`bandwidth_gbps` is gigabits per second (network convention: InfiniBand NDR is 400 Gb/s,
an H100's NVLink 450 GB/s per direction is 3600 Gb/s), `latency_us` microseconds,
`peak_tflops` 1e12 FLOP/s, `hbm_gbytes_per_s` 1e9 B/s, `memory_gib` 2**30 B.
"""

from __future__ import annotations

import re

from simtrain.scenario.errors import SimtrainError

GBIT = 1e9 / 8  # bytes per second in one Gb/s
GB = 1e9
GIB = 2**30
US = 1e-6
TERA = 1e12


def gbps_to_bytes_per_s(gbps: float) -> float:
    return gbps * GBIT


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.I)
_POW = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


MAX_SIZE = 2**40  # 1 TiB: far past any buffer a collective moves (nccl-tests sweeps stop at a few GiB)


def parse_size(text: str, field: str = "size") -> int:
    """Parse '1GiB', '512M', '4096', '1e9' into bytes (K/M/G/T are binary, as nccl-tests uses):
    a whole number of bytes from 1 to MAX_SIZE, else a one-line error."""
    m = _SIZE.match(str(text))
    if not m:
        raise SimtrainError(
            f"{field} = {text!r}: not a size; write bytes with an optional K, M, G or T suffix, e.g. 1GiB or 512M"
        )
    value, prefix, _ = m.groups()
    nbytes = float(value) * 1024 ** _POW[prefix.upper()]
    if not nbytes <= MAX_SIZE:  # also inf (1e400)
        raise SimtrainError(f"{field} = {text!r}: above simtrain's limit of {format_size(MAX_SIZE)}; give a size up to that, e.g. 8GiB")
    if nbytes < 1 or nbytes != int(nbytes):
        raise SimtrainError(f"{field} = {text!r}: is {nbytes:g} bytes, not a whole number of bytes of at least 1; "
                            "write e.g. 1, 4096 or 1KiB")
    return int(nbytes)


def format_size(nbytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            v = nbytes / scale
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.2f}{unit}"
    return f"{nbytes:.0f}B"
