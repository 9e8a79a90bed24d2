"""SMs that communication kernels hold while they overlap compute.

An NCCL collective runs as one kernel with one thread block per channel, resident from the
moment its stream reaches it until the collective ends (waiting for its peers included).
A compute kernel launched meanwhile gets the SMs those blocks leave: a GEMM's tiles on an
H100 beside a 24-channel all-gather run on 108 of its 132 SMs. simtrain charges that as
compute running at (SMs - held) / SMs of its speed while a collective of the data-parallel
stream is in flight on the device (stack.nccl_channels_intra_node / _inter_node blocks), or
an overlapped expert all-to-all (stack.ep_overlap_sms: the dispatcher's SMs, DeepEP's 20).
The TP all-reduce or reduce-scatter Megatron overlaps with the weight-gradient GEMMs holds
the TP communicator's blocks beside them too, worked out in closed form for the pair
(`contended_overlap`). Not charged: pipeline sends and context parallelism's ring exchange
(NCCL's p2p channels per peer depend on the message size).

`SmLoad` is one device's history of blocks held, a step function of time. The engine's
records list (`ContendedRecords`) adds up each device's main-stream compute seconds; at
the end of each action the engine runs the work that compute lost, its seconds times the
blocks held on average over the action over the SMs (the compute taken as spread evenly
over the action: the same figure whether the engine ran the action piece by piece or as
one span, and whatever detail its records keep), at the speed the SMs the blocks leave
allow at that moment (`owed_seconds`).
"""

from __future__ import annotations

from typing import Generator, Iterable

import simpy

from simtrain.engine.timeline import Record, record

# main-stream records of the model's kernels: forward, backward, weight gradient and
# recomputation ("opt" is left out: the optimizer runs after the step's collectives, and
# the trainer's bookkeeping recorded there is host time, not kernels)
COMPUTE_KINDS = frozenset(("F", "B", "W", "R"))
KIND = "nccl_sm"  # the record kind (and breakdown part) of the compute NCCL's blocks slowed


class SmLoad:
    """Blocks held on one device as a step function: change times and the level from each."""

    __slots__ = ("times", "levels", "held")

    def __init__(self) -> None:
        self.times: list[float] = [0.0]
        self.levels: list[int] = [0]
        self.held = 0  # blocks held now

    def change(self, now: float, delta: int) -> None:
        self.held += delta
        if self.times[-1] == now:
            self.levels[-1] = self.held
        else:
            self.times.append(now)
            self.levels.append(self.held)

    def block_seconds(self, t0: float, t1: float) -> float:
        """Blocks held, integrated over [t0, t1] (block-seconds); t1 is at most the last
        change's time or later with the current level."""
        times, levels = self.times, self.levels
        total, end = 0.0, t1
        i = len(times) - 1
        while i >= 0 and end > t0:
            start = times[i]
            if start < end:
                lo = start if start > t0 else t0
                total += levels[i] * (end - lo)
                end = lo
            i -= 1
        return total


class ContendedRecords(list):
    """The engine's records, adding up per device the seconds of its main-stream compute
    records (`busy`) since the engine last paid for them (`SmContention._pay_sm`)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy: dict[int, float] = {}

    def append(self, r: Record) -> None:  # type: ignore[override]
        list.append(self, r)
        if r[2] in COMPUTE_KINDS and r[1] == "main":
            self.busy[r[0]] = self.busy.get(r[0], 0.0) + (r[5] - r[4])

    def extend(self, records: Iterable[Record]) -> None:  # type: ignore[override]
        for r in records:
            self.append(r)


def owed_seconds(owed: float, held: int, sms: int) -> float:
    """Seconds that `owed` full-speed seconds of compute take with `held` of `sms` SMs held
    (at least one SM left: collectives together holding more wait for one another's blocks)."""
    return owed * sms / max(sms - held, 1)


def contended_overlap(t0: float, hidden: float, c_end: float, rate: float) -> tuple[float, float]:
    """`hidden` full-speed seconds of compute started at t0 beside a collective from t0 to
    `c_end` whose blocks leave it `rate` of the SMs: (the compute's end, the pair's end).
    Slowed to `rate` while the collective runs, at full speed after it: the compute ends at
    t0 + hidden / rate if that comes first (the collective then ends the pair), else at
    t0 + hidden + (c_end - t0)(1 - rate)."""
    coll = c_end - t0
    if hidden <= rate * coll:
        return t0 + hidden / rate, c_end
    end = t0 + hidden + coll * (1 - rate)
    return end, end


def coll_parts(p: tuple, t0: float, e: float, ends: list[float], t1: float) -> list[tuple[str, str | None, float, float]]:
    """The records (kind, label or None for the action's, start, end) of a program's
    collective piece p (simtrain.engine.program; p[3] its hidden compute, p[10] the share of
    SMs that compute keeps) run from t0 to e with its compute alongside until t1: that
    compute, what the collective's NCCL blocks cost it, the collective's exposed rest."""
    ce = contended_overlap(t0, p[3], ends[-1], p[10])[0] if p[10] < 1.0 and p[3] > 0 else t1
    out = []
    if t1 > t0:
        out.append((p[4], None, t0, t1))
    if ce > t1:
        out.append((KIND, None, t1, ce))
    if e > ce:
        out.append((p[7], p[8], ce, e))
    return out


class SmContention:
    """The engine's side (mixed into `simtrain.engine.primitives.Primitives`): blocks held
    while a collective of the data-parallel stream or an overlapped expert all-to-all runs,
    the compute owed paid after each action (`_pay_sm`)."""

    def _sm_init(self, plan) -> None:
        """Track the blocks held where a data-parallel collective or an overlapped expert
        all-to-all can run beside compute."""
        self._blocks: dict[tuple[str, int], int] = {}
        self._rates: dict[int, float] = {}  # (`_tp_rate`)
        self.sm_loads: dict[int, SmLoad] | None = None
        stack, L = plan.scenario.stack, plan.layout
        dp = L.dp * L.cp > 1 and (stack.nccl_channels_intra_node or stack.nccl_channels_inter_node)
        self.ep_sms = stack.ep_overlap_sms if L.ep > 1 else 0
        # (a TPU's collectives are not thread blocks on its matrix units: none held there)
        if not self.free and plan.device.sms > 0 and plan.device.family != "tpu" and (dp or self.ep_sms):
            self.sm_loads = {}
            self.records = ContendedRecords()

    def _tp_rate(self, dev: int) -> float:
        """The share of SMs compute keeps beside `dev`'s TP collective (Megatron's backward
        all-reduce or reduce-scatter overlapped with the weight-gradient GEMMs); 1: none held."""
        r = self._rates.get(dev)
        if r is None:
            dv = self.plan.device
            blocks = 0 if (self.free or dv.sms <= 0 or dv.family == "tpu") else self._nccl_blocks("tp", dev)
            r = self._rates[dev] = (dv.sms - blocks) / dv.sms if blocks else 1.0
        return r

    def _nccl_blocks(self, dim: str, dev: int) -> int:
        """Thread blocks `dev`'s `dim` collective keeps on its SMs: the stack's channels for
        a communicator within a node or across nodes."""
        key = (dim, dev)
        n = self._blocks.get(key)
        if n is None:
            topo, stack = self.plan.topology, self.plan.scenario.stack
            nodes = {topo.node_of(d) for d in self._view(dim, dev).group}
            n = self._blocks[key] = (stack.nccl_channels_inter_node if len(nodes) > 1
                                     else stack.nccl_channels_intra_node)
        return n

    def _sm_hold(self, dev: int, dim: str) -> None:
        load = self.sm_loads.get(dev)
        if load is None:
            load = self.sm_loads[dev] = SmLoad()
        load.change(self.env._now, self._nccl_blocks(dim, dev))

    def _sm_release(self, dev: int, dim: str) -> None:
        self.sm_loads[dev].change(self.env._now, -self._nccl_blocks(dim, dev))

    def _sm_hold_until(self, dev: int, blocks: int, done: simpy.Event) -> None:
        """`blocks` held on `dev` from now until `done` (an exchange in flight) fires."""
        if done.callbacks is None:  # (over already)
            return
        load = self.sm_loads.get(dev)
        if load is None:
            load = self.sm_loads[dev] = SmLoad()
        load.change(self.env._now, blocks)
        done.callbacks.append(lambda _e: load.change(self.env._now, -blocks))

    def _pay_sm(self, dev: int, t0: float, stage: int, mb: int) -> Generator[simpy.Event, object, None]:
        """After an action that started at `t0`: run the work its compute lost to the blocks
        held meanwhile, taking its compute as spread evenly over the action (the same in
        the engine's every level of record detail), at the speed the blocks held now leave."""
        busy = self.records.busy.pop(dev, 0.0)
        load = self.sm_loads.get(dev)
        now = self.env._now
        if busy <= 0 or load is None or now <= t0:
            return
        owed = busy * load.block_seconds(t0, now) / (now - t0) / self.plan.device.sms
        if owed > 0:
            yield self.env.timeout(owed_seconds(owed, load.held, self.plan.device.sms))
            self.records.append(record(dev, "main", KIND, "compute slowed by NCCL's SMs", now, self.env._now, stage, mb))
