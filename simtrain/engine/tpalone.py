"""Idle-network time of one tensor-parallel sequence-dim collective, for costs the plan
prices before the engine runs. With TP communication overlapped (engine.overlap_tp_comm:
PyTorch's async TP, Transformer Engine's userbuffers) each collective is pipelined with the
GEMM beside it, chunk by chunk, so a transfer slower than its GEMM shows through
(simtrain.workload.ops, "tp overlap wait"). The same Comm and algorithm choice as the
engine's collectives, on an idle network (the TP group's NVLink domain is its own)."""

from __future__ import annotations

import simpy

from simtrain.hardware.topology import Topology
from simtrain.network.comm import Comm
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.config import Scenario
from simtrain.scenario.layout import Coord, Layout

BF16 = 2


def idle_comm(topo: Topology, algo: str, call_latency_s: float) -> Comm:
    """A Comm on an idle copy of `topo` whose collectives are timed alone (`alone_seconds`):
    the engine's algorithms and their choice, no other traffic."""
    comm = Comm(FlowNetwork(simpy.Environment(), topo), topo, algo, call_latency_s)
    comm.alone = True
    return comm


def alone_seconds(comm: Comm, op: str, group: tuple[int, ...], size: float) -> float:
    """Idle-network seconds of one collective `op` of `size` bytes over `group`."""
    if len(group) < 2:
        return 0.0
    _, phases = comm.collective(op, group, size)
    return sum(comm.net.uncontended_time(ph.key, ph.nbytes, ph.latency) for ph in phases)


def tp_gather_seconds(s: Scenario, L: Layout, topo: Topology) -> float:
    """Seconds of one all-gather of a micro-batch's activation (tokens x hidden, bf16) over
    rank 0's TP group on an idle network; 0 unless sequence-parallel TP communication is
    overlapped with the GEMMs."""
    if not (s.engine.overlap_tp_comm and L.tp > 1 and s.parallel.sequence_parallel) or s.engine.comm == "free":
        return 0.0
    size = s.parallel.micro_batch * (s.training.seq_len // L.cp) * s.model.hidden_size * BF16
    comm = idle_comm(topo, s.engine.collective_algo, s.stack.collective_us * 1e-6)
    return alone_seconds(comm, "all-gather", L.group("tp", L.rank(Coord(0, 0, 0, 0))), size)
