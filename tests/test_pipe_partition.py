"""DeepSpeed's TP-partitioned pipeline tensors (stack.pipe_partitioned,
simtrain.workload.pipe_partition): per micro-batch, a TP all-gather of the whole boundary
tensor and 5N + 2N/TP bytes of copies per PartitionedTensor.full() (one before each forward
on every stage but the first, two before each backward on every stage but the last), and a
2N/TP slice copy by the sender. Checked against hand counts and the ring closed form."""

from __future__ import annotations

import pytest

from simtrain.engine.actions import Engine
from simtrain.engine.dspipe import PIPE_COPIES, PIPE_GATHER, pipe_partition_work
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.stack import Stack
from simtrain.workload.pipe_partition import boundary_work

# Llama 3 8B, TP2 PP4 DP2 on 16 H100s (as tests/test_deepspeed_stack.py)
BASE = ['model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=2",
        "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
        "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.zero=1",
        "parallel.overlap_grad_reduce=false"]
ON = ["stack.pipe_partitioned=true"]
NVL = 3600 / 8 * 1e9 * 0.80  # dgx-h100 NVLink: 450 GB/s x 0.8 (tests/test_collectives.py)
NVL_A = 2 * 1.0e-6  # GPU -> NVSwitch -> GPU
CALL = Stack().collective_us * 1e-6


def _run(extra):
    plan = make_plan(load_scenario(None, BASE + extra))
    return plan, Engine(plan).run()


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_boundary_bytes_by_hand(tp):
    """N = 84 MB (MT-NLG: 1 x 2048 x 20480 x 2 B). Forward on a receiving stage: the received
    slice cloned twice (2 x 2N/TP) and one full(): zeros N + own slice 2N/TP + NCCL copy-out
    2N + clone 2N; backward on a sending stage: two full(); each sender copies its slice."""
    n = 2048 * 20480 * 2.0
    f_mid = boundary_work("F", n, tp, first=False, last=False)
    assert f_mid.gathers == 1
    assert f_mid.before_bytes == pytest.approx(4 * n / tp + 5 * n + 2 * n / tp, rel=1e-12)
    assert f_mid.before_kernels == 2 + tp + 3
    assert f_mid.after_bytes == pytest.approx(2 * n / tp, rel=1e-12) and f_mid.after_kernels == 1
    b_mid = boundary_work("B", n, tp, first=False, last=False)
    assert b_mid.gathers == 2 and b_mid.before_bytes == pytest.approx(2 * (5 * n + 2 * n / tp), rel=1e-12)
    assert b_mid.before_kernels == 2 * (tp + 3) and b_mid.after_bytes == pytest.approx(2 * n / tp, rel=1e-12)
    # the first stage receives nothing forward and sends no gradient; the last the reverse
    f0, b0 = boundary_work("F", n, tp, True, False), boundary_work("B", n, tp, True, False)
    assert (f0.gathers, f0.before_bytes, f0.after_kernels) == (0, 0.0, 1)
    assert (b0.gathers, b0.after_bytes) == (2, 0.0)
    fl, bl = boundary_work("F", n, tp, False, True), boundary_work("B", n, tp, False, True)
    assert (fl.gathers, fl.after_bytes) == (1, 0.0)
    assert (bl.gathers, bl.before_bytes, bl.after_kernels) == (0, 0.0, 1)
    assert boundary_work("F", n, 1, False, False) == boundary_work("B", n, 1, False, False)
    assert boundary_work("B", n, 1, False, False).gathers == 0


def test_engine_runs_the_gathers_and_copies_per_micro_batch():
    """Per micro-batch: 2 gathers on the first stage (backward), 3 on a middle stage, 1 on
    the last; each a ring all-gather of N over the TP pair on NVLink, (n-1)/n N / B + alpha
    + the per-call cost when alone on its links; copies at HBM rate (hand)."""
    plan, recs = _run(ON)
    L, dev = plan.layout, plan.device
    n = 1 * 2048 * 4096 * 2.0
    full_n, work = pipe_partition_work(plan)
    assert full_n == pytest.approx(n, rel=1e-12)
    ring = CALL + (2 - 1) / 2 * n / NVL + 1 * NVL_A
    rate = dev.hbm_bytes_per_s * dev.memory_efficiency
    m = L.microbatches
    for pp, per_mb in ((0, 2), (1, 3), (2, 3), (3, 1)):
        rep = plan.simulated[pp]
        gathers = [r for r in recs if r.device == rep and r.label == PIPE_GATHER]
        assert len(gathers) == per_mb * m
        assert all(r.kind == "tp" for r in gathers)
        assert min(r.end - r.start for r in gathers) == pytest.approx(ring, rel=1e-6)
        copies = sum(r.end - r.start for r in recs if r.device == rep and r.label == PIPE_COPIES)
        first, last = pp == 0, pp == L.pp - 1
        hand_bytes = (0 if first else 5 * n + 6 * n / 2) + (0 if last else 2 * n / 2)  # forward side
        hand_bytes += (0 if last else 2 * (5 * n + 2 * n / 2)) + (0 if first else 2 * n / 2)  # backward side
        kernels = (0 if first else 2 + 5) + (0 if last else 1) + (0 if last else 2 * 5) + (0 if first else 1)
        assert copies == pytest.approx(m * (hand_bytes / rate + kernels * dev.kernel_overhead_s), rel=1e-9)


def test_report_and_json_show_the_cost_and_nothing_by_default():
    from simtrain.analysis.report import text_report
    from simtrain.analysis.run import simulate_plan

    on = simulate_plan(make_plan(load_scenario(None, BASE + ON)))
    d = on.to_dict()["pipe_partition_s"]
    assert d["all_gather"] > 0 and d["copies"] > 0
    assert "TP-partitioned pipeline tensors" in text_report(on)
    off = simulate_plan(make_plan(load_scenario(None, BASE)))
    assert "pipe_partition_s" not in off.to_dict() and "TP-partitioned" not in text_report(off)
    assert off.step_time_s < on.step_time_s
    tp1 = make_plan(load_scenario(None, BASE + ON + ["parallel.tp=1", "parallel.dp=4"]))
    assert pipe_partition_work(tp1) == (0.0, {})


def test_megatron_deepspeed_stack_partitions():
    from simtrain.scenario.stack import load_stack_file

    values, _, _ = load_stack_file("megatron-deepspeed")
    assert values["pipe_partitioned"] is True
    assert Stack().pipe_partitioned is False


def test_non_boolean_refused_with_one_line():
    with pytest.raises(SimtrainError) as e:
        load_scenario(None, BASE + ['stack.pipe_partitioned="yes"'])
    msg = str(e.value)
    assert "pipe_partitioned" in msg and "yes" in msg and "\n" not in msg


# ---- the tied word embedding's gradient all-reduce (stack.tied_grad_allreduce) ----------
TIED = ["stack.tied_grad_allreduce=true", "model.tie_word_embeddings=true"]


def test_tied_bytes_by_hand():
    """vocabulary x hidden / TP gradient elements, in the DP gradient's element size:
    Llama 3 8B at TP2, 128,256 x 4,096 / 2 x 4 B (fp32 gradients, the default); BLOOM
    250,880 x 14,336 / 4 x 4 B = 3.6 GB; MT-NLG (bf16, fp32 gradients) 51,200 x 20,480 / 8 x 4 B
    = 0.52 GB."""
    import tomllib
    from pathlib import Path

    from simtrain.engine.dspipe import tied_grad_ends

    plan = make_plan(load_scenario(None, BASE + TIED))
    assert tied_grad_ends(plan) == (pytest.approx(128256 * 4096 / 2 * 4, rel=1e-12), (0, 3))
    assert tied_grad_ends(make_plan(load_scenario(None, BASE + TIED[:1]))) == (0.0, None)  # untied
    assert tied_grad_ends(make_plan(load_scenario(None, BASE + TIED[1:]))) == (0.0, None)  # key off
    ref = tomllib.loads((Path(__file__).resolve().parent.parent / "simtrain/data/reference.toml").read_text())
    for case, hand in (("bloom-176b-384gpu-iter85376", 250880 * 14336 / 4 * 4),
                       ("mt-nlg-530b-2240gpu", 51200 * 20480 / 8 * 4)):
        p = make_plan(load_scenario(ref["cases"][case]["scenario"]))
        assert p.scenario.stack.tied_grad_allreduce
        assert tied_grad_ends(p)[0] == pytest.approx(hand, rel=1e-12)


def test_tied_all_reduce_runs_once_between_first_and_last_stage():
    """Only the first and last stage take part, once per step, after their last backward
    and before their DP reduction; a two-rank ring all-reduce of S over NVLink (the replica's
    stages share a node here): 2 (n-1)/n S / B + 2 (n-1) alpha + the per-call cost."""
    plan, recs = _run(TIED)
    from simtrain.engine.dspipe import TIED_ALLREDUCE

    s = 128256 * 4096 / 2 * 4
    ring = CALL + 2 * (2 - 1) / 2 * s / NVL + 2 * 1 * NVL_A
    for pp in range(plan.layout.pp):
        rep = plan.simulated[pp]
        tied = [r for r in recs if r.device == rep and r.label == TIED_ALLREDUCE]
        assert len(tied) == (1 if pp in (0, plan.layout.pp - 1) else 0)
        if tied:
            assert tied[0].kind == "dp"
            last_b = max(r.end for r in recs if r.device == rep and r.kind == "B")
            assert tied[0].start >= last_b - 1e-12
            dp = [r for r in recs if r.device == rep and r.stream == "comm" and r.label.endswith("(dp)")
                  and not r.label.startswith("all-gather")]  # (the parameters' gather opens the step)
            assert dp and min(r.start for r in dp) >= tied[0].end - 1e-12
    first = [r for r in recs if r.device == plan.simulated[0] and r.label == TIED_ALLREDUCE][0]
    assert first.end - first.start == pytest.approx(ring, rel=1e-6)
    from simtrain.analysis.report import text_report
    from simtrain.analysis.run import simulate_plan

    res = simulate_plan(make_plan(load_scenario(None, BASE + TIED)))
    assert res.to_dict()["tied_grad_allreduce_s"] == pytest.approx(2 * ring / plan.layout.pp, rel=1e-6)
    assert "tied word embedding" in text_report(res)
    assert "tied_grad_allreduce_s" not in simulate_plan(make_plan(load_scenario(None, BASE))).to_dict()
