"""Actions taken as leased spans (simtrain.engine.program) give the times of running them
piece by piece, with fewer events, also when other traffic breaks the leases."""

import pytest

from simtrain.analysis.metrics import summarize
from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario

BASE = ['model.name="llama3-8b"', "model.num_hidden_layers=8", "parallel.first_stage_layers=-1",
        "parallel.last_stage_layers=-1", "training.seq_len=4096", "parallel.dp=0", 'cluster.topology="dgx-a100"']


def run(overrides, leases: bool):
    plan = make_plan(load_scenario("llama3-405b-8k", BASE + overrides))
    eng = Engine(plan)
    eng.leases = leases
    recs = eng.run()
    return summarize(plan, recs), next(eng.env._eid), eng


CASES = [
    # TP pairs sharing NVLink with pipeline transfers inside the node (leases break)
    ["cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", 'schedule.name="1f1b"', "parallel.vp=1", "training.global_batch=16"],
    ["cluster.gpus=16", "parallel.tp=4", "parallel.pp=2", 'schedule.name="1f1b"', "parallel.vp=1", "training.global_batch=16",
     "parallel.sequence_parallel=true", "parallel.recompute=\"full\""],
    ["cluster.gpus=32", "parallel.tp=2", "parallel.pp=2", "parallel.vp=2", 'schedule.name="interleaved"', "training.global_batch=32",
     "parallel.zero=0", "parallel.overlap_grad_reduce=false", "engine.async_tp_backward=true"],
    # context parallelism, ring and all-gather, across nodes
    ["cluster.gpus=32", "parallel.tp=4", "parallel.cp=4", "parallel.pp=2", 'schedule.name="1f1b"', "parallel.vp=1",
     "training.global_batch=8", 'parallel.cp_algo="ring"'],
    ["cluster.gpus=32", "parallel.tp=2", "parallel.cp=2", "parallel.pp=4", 'schedule.name="zb-h1"', "parallel.vp=1",
     "training.global_batch=16", 'parallel.cp_algo="allgather"'],
]


@pytest.mark.parametrize("ov", CASES)
def test_leased_spans_equal_piece_by_piece(ov):
    fast, ev_fast, eng = run(ov, True)
    slow, ev_slow, _ = run(ov, False)
    assert fast.step_time_s == pytest.approx(slow.step_time_s, rel=1e-12)
    for part, v in slow.breakdown.items():
        assert fast.breakdown[part] == pytest.approx(v, rel=1e-9, abs=1e-12 * slow.step_time_s), part
    assert ev_fast < ev_slow


def test_some_spans_are_broken_by_other_traffic():
    _, _, eng = run(CASES[0], True)
    assert eng.lease_breaks > 0
