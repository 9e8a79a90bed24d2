"""DeepSpeed v0.3.13's ZeRO-3 fetches as the engine runs them (stack.zero3_fetch_sync,
zero3_max_live_numel, zero3_persist_rank_ops; simtrain.engine.zero3sync,
simtrain.workload.zero3). Checked against hand counts from the code's rules
(stage3.py fetch_sub_module / prefetch_next_sub_modules / _post_step,
partition_parameters.py _allgather_params) and a closed form of the step with free
communication."""

from __future__ import annotations

import math

import pytest

from simtrain.analysis.run import simulate_plan
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload import zero3 as Z3

S175 = "megatron-sc21-t2-175b-zero3-1536"
S530 = "megatron-sc21-t2-530b-zero3-2240"
FREE = ['engine.comm="free"']


def _plan(name: str, extra: list[str] | None = None):
    return make_plan(load_scenario(name, extra or []))


def test_gpt_530b_fetch_plan_by_hand():
    """GPT 530B (h = 20,480, FFN 81,920), one layer, full recomputation, DeepSpeed's defaults
    (persistence 1e5, reuse distance 1e9, max live parameters 1e9). Gathered tensors:
    QKV 20,480 x 61,440 = 1,258,291,200, out proj 20,480^2 = 419,430,400 (segment 0), fc1 and
    fc2 20,480 x 81,920 = 1,677,721,600 (segment 1). Kept for the backward: fc2 only (nothing
    runs between its recomputed forward and its backward). A fetch prefetches the next tensor
    while the gathered elements are under 1e9: only out proj's (4.19e8) does, in every pass
    (no kept tensor precedes it). Compute shares: 1,258,291,200 / 1,677,721,600 = 0.75 and
    0.25 of segment 0; 0.5 and 0.5 of segment 1."""
    s = _plan(S530).scenario
    plan = Z3.fetch_plan(s.model, s.parallel, s.stack)
    assert [(t.seg, t.numel) for t in plan] == [(0, 1258291200.0), (0, 419430400.0), (1, 1677721600.0),
                                                (1, 1677721600.0)]
    assert [t.kept for t in plan] == [False, False, False, True]
    assert [t.prefetch for t in plan] == [(False,) * 3, (True,) * 3, (False,) * 3, (False,) * 3]
    assert [t.share for t in plan] == pytest.approx([0.75, 0.25, 0.5, 0.5], rel=1e-12)
    # GPT-3 175B's tensors (4.5e8, 1.5e8, 6.0e8, 6.0e8) all stay under 1e9: every fetch
    # prefetches the next, except where a kept fc2 (6.0e8) is held: fc2's own fetches count
    # only itself, so the flags stay on
    s = _plan(S175).scenario
    assert all(t.prefetch == (True,) * 3 for t in Z3.fetch_plan(s.model, s.parallel, s.stack))
    # stage3_max_live_parameters of the DeepSpeedExamples config (1e8) turns prefetching off
    s = load_scenario(S175, ["stack.zero3_max_live_numel=1e8"])
    assert not any(any(t.prefetch) for t in Z3.fetch_plan(s.model, s.parallel, s.stack))


def test_persistent_regather_after_the_step_by_hand():
    """530B over 2,240 ranks: each layer's whole tensors are the QKV, out-proj, fc1, fc2
    biases (61,440, 20,480, 81,920, 20,480) and two LayerNorms' weights and biases (4 x
    20,480). Each is padded to a multiple of 2,240 and split in parts of ceil(numel / 2,240):
    28, 10, 37, 10, 10 elements, so ceil(61,440/28) = 2,195, 2,048, ceil(81,920/37) = 2,215,
    2,048 and 4 x 2,048 ranks hold part of them: 16,698 per layer. _allgather_params runs
    2 x 2,240 list operations, one copy of each of the 840 tensors' own part, and 4 operations
    (narrow, view, narrow, copy_) per (tensor, rank): (4,480 + 840 + 4 x 105 x 16,698) x 7 us
    = 49.12936 s, added to the optimizer step."""
    hand = (2 * 2240 + 105 * 8 + 4 * 105 * 16698) * 7e-6
    assert hand == pytest.approx(49.12936, rel=1e-9)
    s = _plan(S530).scenario
    assert Z3.ranks_holding(61440, 2240) == 2195 and Z3.ranks_holding(81920, 2240) == 2215
    assert Z3.ranks_holding(20480, 2240) == 2048 and Z3.ranks_holding(100, 2240) == 100
    assert Z3.persistent_gather_seconds(s.model, s.parallel, s.stack, 105) == pytest.approx(hand, rel=1e-12)
    with_it = _plan(S530).optimizer_s[0]
    without = _plan(S530, ["stack.zero3_persist_rank_ops=0"]).optimizer_s[0]
    assert with_it - without == pytest.approx(hand, rel=1e-9)


def _closed_form_step(plan) -> float:
    """The step with free communication, summed by pass from the code's order:
    - forward and recomputed forward: per layer, the 4 gathers' buffers zeroed and their host
      loops (2 operations per rank each, the GPU idle: nothing else to overlap without
      communication time) and the passes' compute;
    - backward: per layer 3 gathers' loops (fc2 kept) and, per tensor after the stage's
      first, max(its backward, the previous gradient's reduce-scatter loop of 3 operations
      per rank) since the fetch after it waits for that reduce-scatter; the first tensor's
      backward alone; the epilogue's reduce-scatter loop, the GPU idle;
    - the embedding / head work and the optimizer step (with the persistent re-gather)."""
    s, st, dev = plan.scenario, plan.stages[0], plan.device
    lc, n = st.layer, s.parallel.dp
    g, r = n * 2 * 7e-6, n * 3 * 7e-6
    tensors = Z3.fetch_plan(s.model, s.parallel, s.stack)
    # each gathered buffer zeroed first: 2 bytes per element written, plus one kernel's overhead
    zero = {t.numel: 2 * t.numel / (dev.hbm_bytes_per_s * dev.memory_efficiency) + dev.kernel_overhead_s
            for t in tensors}
    fwd = st.layers * (sum(g + zero[t.numel] for t in tensors) + lc.fwd[0] + lc.fwd[1])
    # each block's own weight gradient: a GPT layer's attention linears hold 4h^2 of its
    # 12h^2 weights, the MLP 8h^2, so about a third and two thirds of W (GEMM efficiency
    # differs a little between the shapes)
    wgs = [sum(p) for p in lc.wgrad_parts()]
    assert sum(wgs) == pytest.approx(lc.bwd_weight, rel=1e-12)
    assert wgs[0] / lc.bwd_weight == pytest.approx(1 / 3, abs=0.03)
    order = [t for t in reversed(tensors)] * st.layers
    parts = [t.share * (lc.bwd_input[t.seg] + wgs[t.seg]) for t in order]
    again = sum(g + zero[t.numel] for t in tensors if not t.kept)  # fc2 kept
    bwd = st.layers * again + parts[0] + sum(max(p, r) for p in parts[1:]) + r
    ends = st.embed.fwd + st.head.fwd + st.head.bwd_input + st.head.bwd_weight + st.embed.bwd_weight
    return 2 * fwd + bwd + ends + plan.optimizer_s[0]


@pytest.mark.parametrize("name", [S175, S530])
def test_free_communication_step_closed_form(name):
    plan = _plan(name, FREE)
    assert simulate_plan(plan).step_time_s == pytest.approx(_closed_form_step(plan), rel=1e-9)


def test_gathers_without_prefetch_are_exposed_with_the_network():
    """530B over 2,240 ranks: 3 of the 4 gathers of every layer and pass are not prefetched,
    so their collectives (0.8-3.4 GB, tens of ms each over 2,240 ranks) beyond the host's
    copy-back loop (2,240 x 7 us = 15.68 ms) stand between the sub-modules. Against free
    communication the compute does not move and the step grows by exactly the growth of the
    exposed DP time (with free communication that is the reduce-scatter loops the backward
    does not cover), which is seconds, plus the compute the prefetched gathers' NCCL blocks
    slowed (simtrain.engine.smload; none with free communication)."""
    free = simulate_plan(_plan(S530, FREE))
    net = simulate_plan(_plan(S530))
    compute = lambda r: r.breakdown["compute"] + r.breakdown["recompute"] + r.breakdown["optimizer"]
    assert compute(net) == pytest.approx(compute(free), rel=1e-9)
    grow = net.breakdown["dp"] - free.breakdown["dp"]
    assert grow > 5.0  # seconds
    assert free.breakdown["nccl_sm"] == 0.0 and net.breakdown["nccl_sm"] > 0
    assert net.step_time_s - free.step_time_s == pytest.approx(grow + net.breakdown["nccl_sm"], rel=1e-6)


def test_other_stacks_keep_their_path():
    """The keys default off: a stack that does not set them runs torch FSDP's layer gathers."""
    from simtrain.engine.actions import Engine
    plan = _plan(S175, ["stack.zero3_fetch_sync=false"])
    assert Engine(plan).z3 == () and Engine(_plan(S175)).z3 != ()
    from simtrain.scenario.stack import Stack
    d = Stack()
    assert not d.zero3_fetch_sync and d.zero3_persist_rank_ops == 0 and d.zero3_max_live_numel == 0
    assert math.isclose(Z3.persistent_gather_seconds(plan.scenario.model, plan.scenario.parallel, d, 96), 0.0)


def test_ring_only_gathers_and_scatters():
    """stack.ring_gather_scatter: NCCL 2.7-2.8 (tuning.cc: every algorithm but ring skipped
    for collectives other than all-reduce) runs all-gather and reduce-scatter as rings. Over
    16 GPUs of 2 DGX A100 nodes a 1 MB all-gather would otherwise go hierarchical (2 ring
    latency chains of 7 and 1 hops against 15); all-reduce keeps its choice; an explicit
    engine.collective_algo still wins."""
    import simpy

    from simtrain.hardware.load import load_topology
    from simtrain.network.comm import Comm
    from simtrain.network.flows import FlowNetwork

    topo = load_topology("dgx-a100", 16)
    group = tuple(range(16))

    def algo(op: str, ring_ops: bool, forced: str = "auto") -> str:
        comm = Comm(FlowNetwork(simpy.Environment(), topo), topo, forced, 10e-6, ring_ops=ring_ops)
        return comm.collective(op, group, 1e6)[0]

    assert algo("all-gather", False) == "hierarchical" and algo("reduce-scatter", False) == "hierarchical"
    assert algo("all-gather", True) == "ring" and algo("reduce-scatter", True) == "ring"
    assert algo("all-reduce", True) == algo("all-reduce", False) != "ring"
    assert algo("all-gather", True, "hierarchical") == "hierarchical"
    assert _plan(S530).scenario.stack.ring_gather_scatter


def test_list_gather_ends_after_its_copy_backs():
    """The first gather of the step (530B QKV over 2,240 ranks, not prefetched) ends when
    PyTorch 1.8's per-rank copy-backs have run: the collective (2.5 GB, ring over 2,240
    ranks: tens of ms) outlasts the host's loop launching them (2,240 x 7 us = 15.68 ms), so
    all 2,240 copies wait for it and then run one after another, each reading and writing
    one rank's 561,738 fp16 elements (the tensor padded to a multiple of the ranks) at the
    A100's streaming bandwidth plus its per-kernel overhead: the wait for the parameters ends
    2,240 x that after the collective."""
    from simtrain.engine.actions import Engine

    plan = _plan(S530)
    records = Engine(plan).run()
    ag = min((r for r in records if r.stream == "comm" and r.label == "all-gather(zero3)"), key=lambda r: r.start)
    wait = min((r for r in records if r.stream == "main" and r.label == "wait params"), key=lambda r: r.start)
    dev = plan.device
    part = math.ceil(20480 * 61440 / 2240)
    one = 2 * 2 * part / (dev.hbm_bytes_per_s * dev.memory_efficiency) + dev.kernel_overhead_s
    assert ag.end - ag.start > 2240 * 7e-6  # the collective outlasts the host's loop
    assert wait.end == pytest.approx(ag.end + 2240 * one, rel=1e-9)
