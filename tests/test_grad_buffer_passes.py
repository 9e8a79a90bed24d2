"""Megatron-Core DDP's per-step passes over its gradient buffer as stack data
(stack.grad_buffer_passes, simtrain.workload.kernels.GRAD_PASSES): zeroing the whole buffer
before the first forward, and each bucket's NaN-check norm and 1/DP scaling on the compute
stream before its reduction. Checked against hand arithmetic and in the engine's records."""

from __future__ import annotations

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.gradwork import bucket_params, grad_buffer_passes
from simtrain.engine.plan import make_plan
from simtrain.hardware.devices import get_device
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.stack import GRAD_BUFFER_PASSES
from simtrain.workload.costs import grad_buffer_time
from simtrain.workload.kernels import GRAD_PASSES

# Llama 3 8B, TP2 PP2 DP4 on 16 H100s, ZeRO-1 with overlapped gradient reduce-scatter
BASE = ['model.name="llama3-8b"', "cluster.gpus=16", 'cluster.stack="megatron-core"', "parallel.tp=2",
        "parallel.pp=2", "parallel.dp=4", "parallel.cp=1", "parallel.first_stage_layers=-1",
        "parallel.last_stage_layers=-1", "training.global_batch=16", "training.seq_len=2048", "parallel.vp=1",
        'schedule.name="1f1b"', "parallel.zero=1"]


def test_pass_names_agree():
    """The scenario layer's list of pass names (it may not import the workload layer) and
    the kernel catalog's."""
    assert set(GRAD_BUFFER_PASSES) == set(GRAD_PASSES)


def test_grad_gpt_1_7b_buffer_passes_by_hand():
    """Megatron-LM README's GPT 1.7B on TP1: 1.8e9 gradients held, fp32 (4 B). Zero (1 write)
    + NaN-check norm (1 read) + 1/DP scaling (1 read, 1 write) = 4 accesses x 4 B x 1.3 =
    20.8 B per gradient = 37.44 GB, at 3.35 TB/s x 0.87 = 12.85 ms, plus one memset kernel
    and two kernels per bucket (38 buckets of max(40M, 48M) parameters at DP 48) at 2 us."""
    dev = get_device("H100-SXM")
    params, buckets = 1.8e9, 38
    assert bucket_params(48) == 48e6 and bucket_params(8) == 40e6
    hand = 4 * 4 * 1.3 * params / (3350e9 * 0.87) + (1 + 2 * buckets) * 2e-6
    assert hand == pytest.approx(12.999e-3, rel=1e-3)
    got = grad_buffer_time(dev, params, 4, ("zero", "nan-check", "scale"), buckets)
    assert got == pytest.approx(hand, rel=1e-9)
    # bf16 gradients halve the traffic; no passes, no time
    assert grad_buffer_time(dev, params, 2, ("zero",)) == pytest.approx(1.3 * 2 * params / (3350e9 * 0.87) + 2e-6,
                                                                        rel=1e-9)
    assert grad_buffer_time(dev, params, 4, ()) == 0.0


def _run(extra: list[str]):
    plan = make_plan(load_scenario(None, BASE + extra))
    return plan, Engine(plan).run()


def test_engine_runs_the_passes_where_megatron_does():
    """Zeroing on every pipeline rank before its first forward, over every gradient the rank
    holds (not the optimizer's 1/DP shard); the per-bucket passes once per stage after its
    last backward, their time the sum over the buckets the engine launched."""
    plan, recs = _run([])
    gp = grad_buffer_passes(plan)
    assert gp is not None
    dev = plan.device
    for r in range(plan.layout.pp):
        held = sum(st.params for st in plan.stages if plan.schedule.placement[st.index] == r)
        assert gp.zero_s[r] == pytest.approx(4 * 1.3 * held / (dev.hbm_bytes_per_s * dev.memory_efficiency)
                                             + dev.kernel_overhead_s, rel=1e-9)
    # NaN check + scaling: 3 accesses of 4 B per gradient byte of 4 B
    assert gp.per_byte_s == pytest.approx(3 * 1.3 / (dev.hbm_bytes_per_s * dev.memory_efficiency), rel=1e-9)
    assert gp.per_bucket_s == pytest.approx(2 * dev.kernel_overhead_s, rel=1e-9)
    for rank in plan.simulated:
        mine = [r for r in recs if r.device == rank]
        zero = [r for r in mine if r.label == "zero grad buffer"]
        assert len(zero) == 1 and zero[0].start == 0.0
        first_f = min(r.start for r in mine if r.kind == "F")
        assert first_f >= zero[0].end
        passes = [r for r in mine if r.label == "grad buffer passes"]
        assert len(passes) == 1  # one stage per rank
        buckets = [r for r in mine if r.label == "reduce-scatter(dp)"]
        owed = sum(gp.bucket_s(r.nbytes) for r in buckets)
        assert passes[0].duration == pytest.approx(owed, rel=1e-9)
        last_b = max(r.end for r in mine if r.kind == "B")
        assert passes[0].start >= last_b


def test_passes_show_in_the_optimizer_breakdown_and_slow_the_step():
    from simtrain.analysis.run import simulate

    with_p = simulate(load_scenario(None, BASE))
    without = simulate(load_scenario(None, BASE + ["stack.grad_buffer_passes=[]"]))
    plan = with_p.extra["plan"]
    gp = grad_buffer_passes(plan)
    rank0_params = sum(st.params for st in plan.stages if plan.schedule.placement[st.index] == 0)
    # every rank pays zeroing and its buckets' passes: the optimizer part grows by about
    # zero + passes (4 accesses over the held gradients), within the buckets' kernel costs
    extra = 4 * 1.3 * 4 * rank0_params / (plan.device.hbm_bytes_per_s * plan.device.memory_efficiency)
    grown = with_p.breakdown["optimizer"] - without.breakdown["optimizer"]
    assert grown == pytest.approx(extra, rel=0.05)
    assert gp.zero_s[0] < grown
    assert with_p.step_time_s > without.step_time_s


def test_bucket_reductions_wait_for_their_passes():
    """A bucket's reduce-scatter cannot start before the compute stream has run its passes:
    the first bucket starts later by at least its own passes."""
    plan, recs = _run([])
    _, recs0 = _run(["stack.grad_buffer_passes=[]"])
    gp = grad_buffer_passes(plan)
    rank = plan.simulated[0]

    def first_rs(rs):
        return min((r for r in rs if r.device == rank and r.label == "reduce-scatter(dp)"), key=lambda r: r.start)

    a, b = first_rs(recs), first_rs(recs0)
    # the zero pass at the start shifts everything by zero_s; the bucket's passes add to it
    assert a.start - b.start >= gp.bucket_s(a.nbytes) * 0.999


def test_not_under_fsdp():
    """ZeRO-3 shards its gradients (torch FSDP): not Megatron-Core's buffer."""
    plan = make_plan(load_scenario(None, BASE + ["parallel.zero=3", "parallel.pp=1", "parallel.dp=8"]))
    assert grad_buffer_passes(plan) is None


@pytest.mark.parametrize("value,why", [('["zero", "memset"]', "'memset' is not a pass"),
                                       ('["zero", "zero"]', "names a pass twice")])
def test_bad_passes_refused_in_one_line(value, why):
    with pytest.raises(SimtrainError) as e:
        load_scenario(None, BASE + [f"stack.grad_buffer_passes={value}"])
    msg = str(e.value)
    assert "\n" not in msg and "grad_buffer_passes" in msg and why in msg and "nan-check" in msg


def test_megatron_lm_2022_divides_the_buffer_before_its_all_reduce():
    """Megatron-LM 2022's local DDP (stacks/megatron-lm-2022.toml): the buffer zeroed, and
    after the backward divided by the DP size (1 read + 1 write) before the one all-reduce,
    which waits for it: passes over every gradient held, 2 x 4 B x 1.3 per gradient."""
    plan, recs = _run(['cluster.stack="megatron-lm-2022"', "parallel.zero=0"])
    gp = grad_buffer_passes(plan)
    dev = plan.device
    rank = plan.simulated[0]
    st = plan.stages[0]
    mine = [r for r in recs if r.device == rank]
    (passes,) = [r for r in mine if r.label == "grad buffer passes"]
    grads = st.layers * st.grad_bytes_per_layer + st.end_grad_bytes  # bytes held on the rank
    hand = 2 * 1.3 * grads / (dev.hbm_bytes_per_s * dev.memory_efficiency) + dev.kernel_overhead_s
    assert passes.duration == pytest.approx(hand, rel=1e-9)
    assert gp.zero_s[0] == pytest.approx(1.3 * grads / (dev.hbm_bytes_per_s * dev.memory_efficiency)
                                         + dev.kernel_overhead_s, rel=1e-9)
    reduce = [r for r in mine if r.label == "all-reduce(dp)"]
    assert reduce and min(r.start for r in reduce) >= passes.end
