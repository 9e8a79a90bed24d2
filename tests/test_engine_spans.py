"""Per-rank mode's coalesced TP spans (simtrain.engine.spans: one event for a TP group's
span; Engine.backward: a stage's last backward by layer while its gradient buckets are
reduced) give the times of running every TP collective piece by piece (a rendezvous
and a bundle each), with fewer events, also when the members of a TP group arrive at
different times (a thinner NIC on one pipeline path). Two data-parallel replicas: the buckets go on the NICs too."""

import pytest

from simtrain.analysis.metrics import summarize
from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario

BASE = ['model.name="llama3-8b"', "model.num_hidden_layers=16", "parallel.first_stage_layers=-1",
        "parallel.last_stage_layers=-1", "training.seq_len=2048", "parallel.dp=0", 'cluster.topology="dgx-a100"',
        'engine.mode="per-rank"', "cluster.gpus=64", "parallel.tp=8", "parallel.pp=4", 'schedule.name="1f1b"',
        "parallel.vp=1", "training.global_batch=16"]
THIN = ['whatif.degraded_links=["9-leaf1"]', "whatif.link_bandwidth_factor=0.05"]  # GPU 9: stage 1, TP rank 1


def run(overrides: list[str], coalesce: bool):
    plan = make_plan(load_scenario("llama3-405b-8k", BASE + overrides))
    eng = Engine(plan)
    if not coalesce:  # no TP times known up front: every collective piece by piece
        eng._plan_coalescing = lambda: None
    recs = eng.run()
    return summarize(plan, recs), next(eng.env._eid), recs


def per_device(recs) -> dict[tuple[int, str], float]:
    out: dict[tuple[int, str], float] = {}
    for r in recs:
        if r.stream == "main":
            out[(r.device, r.kind)] = out.get((r.device, r.kind), 0.0) + r.duration
    return out


def ends(recs) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in recs:
        out[r.device] = max(out.get(r.device, 0.0), r.end)
    return out


@pytest.mark.parametrize("ov", [[], ["parallel.sequence_parallel=false"], THIN, THIN + ["engine.async_tp_backward=true"]])
def test_coalesced_tp_spans_equal_piece_by_piece(ov):
    fast, ev_fast, recs_fast = run(ov, True)
    slow, ev_slow, recs_slow = run(ov, False)
    assert fast.step_time_s == pytest.approx(slow.step_time_s, rel=1e-12)
    for part, v in slow.breakdown.items():
        assert fast.breakdown[part] == pytest.approx(v, rel=1e-9, abs=1e-12 * slow.step_time_s), part
    a, b = per_device(recs_fast), per_device(recs_slow)
    assert a.keys() == b.keys()
    for k, v in b.items():
        assert a[k] == pytest.approx(v, rel=1e-9, abs=1e-12 * slow.step_time_s), k
    assert ends(recs_fast) == pytest.approx(ends(recs_slow), rel=1e-12)
    assert ev_fast < ev_slow / 2


def test_members_of_a_tp_group_wait_for_the_last_one():
    """With one thin NIC the TP peers of the GPU behind it wait for it (the path where the
    last member to arrive schedules the span's end for the others)."""
    _, _, recs = run(THIN, True)
    waits = [r for r in recs if r.label == "wait tp peers" and r.duration > 0]
    assert waits and {r.device for r in waits} >= {8, 10, 15}
