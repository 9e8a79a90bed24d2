"""Idle-network time of one tensor-parallel sequence-dim collective, for costs the plan
prices before the engine runs: PyTorch's async TP (stack.async_tp_split_gemms) pipelines
each shard's copy with the GEMM on the previous shard, so a copy slower than its GEMM shows
through (simtrain.workload.ops, "async tp wait"). The same Comm and algorithm choice as the
engine's collectives, on an idle network (the TP group's NVLink domain is its own)."""

from __future__ import annotations

import simpy

from simtrain.hardware.topology import Topology
from simtrain.network.comm import Comm
from simtrain.network.flows import FlowNetwork
from simtrain.scenario.config import Scenario
from simtrain.scenario.layout import Coord, Layout

BF16 = 2


def async_tp_gather_seconds(s: Scenario, L: Layout, topo: Topology) -> float:
    """Seconds of one all-gather of a micro-batch's activation (tokens x hidden, bf16) over
    rank 0's TP group on an idle network; 0 unless async TP splits the GEMMs."""
    if not (s.stack.async_tp_split_gemms and L.tp > 1 and s.parallel.sequence_parallel) or s.engine.comm == "free":
        return 0.0
    size = s.parallel.micro_batch * (s.training.seq_len // L.cp) * s.model.hidden_size * BF16
    comm = Comm(FlowNetwork(simpy.Environment(), topo), topo, s.engine.collective_algo, s.stack.collective_us * 1e-6)
    comm.alone = True
    _, phases = comm.collective("all-gather", L.group("tp", L.rank(Coord(0, 0, 0, 0))), size)
    return sum(comm.net.uncontended_time(ph.key, ph.nbytes, ph.latency) for ph in phases)
