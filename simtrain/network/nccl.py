"""nccl-tests-style collective benchmarks on a simulated cluster network.

`CollectiveBench(topo, op, n, algo)` runs one collective over the first n devices of a
topology as simpy processes over the flow network (simtrain.network.flows.FlowNetwork +
simtrain.network.comm.Comm), in a fresh simpy Environment for every size, and reports what
nccl-tests prints (NVIDIA nccl-tests, doc/PERFORMANCE.md):
    algbw = size / time
    busbw = algbw * factor, factor = 2(n-1)/n for all-reduce, (n-1)/n for
            reduce-scatter, all-gather and all-to-all, 1 for broadcast and send-recv,
so that busbw is comparable to the link bandwidth whatever n is. Bandwidths are in GB/s
(1e9 bytes/s), as nccl-tests prints them. Sizes follow nccl-tests' conventions (see
simtrain.network.collectives): all-reduce and broadcast move an S-byte buffer,
reduce-scatter's input and all-gather's output are S bytes, all-to-all sends S bytes per
rank in total, and send-recv is nccl-tests' sendrecv: every rank sends S bytes to the next
rank (ring order) while receiving from the previous one.

`size_sweep("1K", "8G")` gives nccl-tests' `-b 1K -e 8G -f 2` list of sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import simpy

from simtrain.hardware.topology import Topology
from simtrain.network import collectives as coll
from simtrain.network.comm import Comm
from simtrain.network.periodic import Periodic
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.stack import Stack
from simtrain.scenario.units import parse_size

GB = 1e9  # nccl-tests' GB/s
MAX_ALL_TO_ALL = 1024  # all-to-all is n(n-1) flows; beyond this the route table gets large


def busbw_factor(op: str, n: int) -> float:
    """nccl-tests' bus-bandwidth factor for `op` over n ranks (doc/PERFORMANCE.md)."""
    if op == "all-reduce":
        return 2 * (n - 1) / n
    if op in ("reduce-scatter", "all-gather", "all-to-all"):
        return (n - 1) / n
    if op in ("broadcast", "send-recv"):
        return 1.0
    raise SimtrainError(f"collective op {op!r}: unknown; use one of {', '.join(coll.OPS)}")


@dataclass(frozen=True)
class BenchRow:
    """One line of the report; `row()` gives the JSON keys."""

    size_bytes: int
    time_s: float
    algbw_gbps: float  # GB/s (1e9 bytes/s), nccl-tests' unit
    busbw_gbps: float
    algo: str
    events: int = 0  # simpy events processed (for benchmarks)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("events")
        return d


class CountingEnvironment(simpy.Environment):
    """A simpy Environment that counts the events it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def step(self) -> None:
        self.events += 1
        super().step()


class CollectiveBench:
    """Runs `op` over devices 0..n-1 of `topo`; routes and loads are computed once and
    reused for every size (Comm.fork)."""

    def __init__(self, topo: Topology, op: str, n: int, algo: str = "auto"):
        if op not in coll.OPS:
            raise bad("OP", op, "unknown collective", f"use one of {', '.join(coll.OPS)}")
        if algo != "auto" and algo not in coll.ALGOS:
            raise bad("--algo", algo, "unknown algorithm", f"use auto or one of {', '.join(coll.ALGOS)}")
        if n < 2:
            raise bad("--gpus", n, "a collective needs at least 2 devices", "use --gpus 2 or more")
        if n > topo.num_gpus:
            raise bad("--gpus", n, f"topology {topo.name!r} has only {topo.num_gpus} devices", "use fewer devices")
        if op == "all-to-all" and n > MAX_ALL_TO_ALL:
            raise bad("--gpus", n, f"all-to-all over more than {MAX_ALL_TO_ALL} devices is n(n-1) flows, too many to route here", f"use --gpus {MAX_ALL_TO_ALL} or fewer")
        self.topo, self.op, self.n, self.algo = topo, op, n, algo
        self.group = tuple(range(n))
        if algo not in ("auto", "ring") and op != "send-recv":
            # tree, hierarchical and torus fall back to ring where they do not apply (other
            # ops, one node, not a sub-torus): refuse rather than label a ring with their name
            if coll.phases(op, algo, self.group, 1.0, topo) == coll.ring(op, self.group, 1.0, topo):
                raise bad("--algo", algo, f"does not apply to {op} over these {n} devices of {topo.name!r} "
                          "(it would run as ring)", "omit --algo (auto) or use --algo ring")
        # every call pays NCCL's fixed per-call cost, as the default software stack states it
        self.call_latency_s = Stack().collective_us * 1e-6
        self._base = self._comm(topo, algo, n, self.call_latency_s)
        if op == "send-recv":
            ph = coll.Phase(coll._ring_pairs(self.group), 1.0, 1)
            self._sendrecv = (("nccl-sendrecv", n), coll.phase_load(ph, topo),
                              coll.phase_latency(ph, topo) + self.call_latency_s)
        else:
            self._base.collective(op, self.group, 1.0)  # every candidate's shape, once

    @staticmethod
    def _comm(topo: Topology, algo: str, n: int, call_latency_s: float) -> Comm:
        """Over the whole of a periodic topology, one period of the flows stands for all
        (simtrain.network.periodic); a phase that is not invariant (a binary tree) routes
        every flow instead."""
        period = topo.period() if n == topo.num_gpus else None
        if period and period < n:  # only one bundle is ever in flight: mixed loads are exact
            return Comm(FlowNetwork(simpy.Environment(), topo), topo, algo, call_latency_s, Periodic(topo, period), mixed=True)
        return Comm(FlowNetwork(simpy.Environment(), topo), topo, algo, call_latency_s)

    def run(self, size: float) -> BenchRow:
        env = CountingEnvironment()
        net = FlowNetwork(env, self.topo)
        if self.op == "send-recv":
            key, load, lat = self._sendrecv
            net.register(key, load)
            algo, phases = "ring", [(key, float(size), lat)]
        else:
            comm = self._base.fork(net)
            algo, nphases = comm.collective(self.op, self.group, float(size))
            phases = [(p.key, p.nbytes, p.latency) for p in nphases]

        def proc():
            for key, nbytes, lat in phases:
                yield net.transfer(key, nbytes, lat)

        env.process(proc())
        env.run()
        t = env.now
        algbw = size / t / GB if t > 0 else float("inf")
        return BenchRow(int(size), t, algbw, algbw * busbw_factor(self.op, self.n), algo, env.events)

    def sweep(self, sizes: Iterable[float]) -> list[BenchRow]:
        return [self.run(s) for s in sizes]


def size_sweep(lo: str | int, hi: str | int, factor: int = 2) -> list[int]:
    """nccl-tests `-b lo -e hi -f factor`: lo, lo*f, ... up to hi (binary K/M/G suffixes)."""
    a = parse_size(str(lo), "--sizes")
    b = parse_size(str(hi), "--sizes")
    if a <= 0 or b < a:
        raise bad("--sizes", f"{lo}:{hi}", "need 0 < first <= last", "write e.g. --sizes 1K:8G")
    out = []
    s = a
    while s <= b:
        out.append(s)
        s *= factor
    return out


def parse_sizes(text: str) -> list[int]:
    """`A:B` as nccl-tests -b A -e B -f 2."""
    lo, sep, hi = text.partition(":")
    if not sep or not lo or not hi:
        raise bad("--sizes", text, "expected FIRST:LAST", "write e.g. --sizes 1K:8G (doubling, as nccl-tests -b 1K -e 8G -f 2)")
    return size_sweep(lo, hi)
