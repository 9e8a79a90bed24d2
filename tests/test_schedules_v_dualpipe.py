"""The schedules built for mixture-of-experts training: interleaved zero bubble (ZB1P over vp
chunks), ZB-V, DualPipe and DualPipeV. Checked against truths that do not come from the
generators: orders worked by hand from PyTorch's and DeepSeek's generator rules, DeepSeek's
bubble and activation formulas, the start-up lower bound every pipeline has, and the
constraints as the generators' sources state them."""

from __future__ import annotations

import itertools

import pytest

import simtrain.schedule as S
from simtrain.scenario.errors import SimtrainError
from simtrain.schedule.action import Action, Schedule, parse_text
from simtrain.schedule.explore import analyse
from simtrain.schedule.validate import ScheduleError, evaluate, peak_in_flight, validate

NEW = ["interleaved-zb", "zb-v", "dualpipe", "dualpipe-v"]


def unit(a: Action) -> float:
    return 1.0


def rows(text: str) -> dict[int, str]:
    return {int(k): v.strip() for k, v in (line.split(":", 1) for line in text.strip().splitlines())}


# ---------------------------------------------------------------- hand-written reference orders

# ZB-V, pp=4, M=8, from PyTorch's ScheduleZBVZeroBubble rules worked by hand: rank 0 runs
# 2*4-1 = 7 forwards of chunk 0 (stage 0), no (F1, F0) pairs, 4 triples F B W of chunk 1
# (stage 7), then F0 B0 W0 F1 B1 W1 until all 8 forwards of each chunk ran, then 4 pairs
# B0 W0. Rank 3: 1 forward of stage 3, 3 pairs (4F, 3F), 1 triple on stage 4, the steady
# state, 3 pairs (3B, 4B), 1 pair (3B7 3W4), the W of stage 4, then those of stage 3.
ZBV_PP4_M8 = {
    0: "0F0 0F1 0F2 0F3 0F4 0F5 0F6 7F0 7B0 7W0 7F1 7B1 7W1 7F2 7B2 7W2 7F3 7B3 7W3 0F7 0B0 0W0 "
       "7F4 7B4 7W4 0B1 0W1 7F5 7B5 7W5 0B2 0W2 7F6 7B6 7W6 0B3 0W3 7F7 7B7 7W7 0B4 0W4 0B5 0W5 0B6 0W6 0B7 0W7",
    3: "3F0 4F0 3F1 4F1 3F2 4F2 3F3 4F3 4B0 4W0 3F4 3B0 3W0 4F4 4B1 4W1 3F5 3B1 3W1 4F5 4B2 4W2 3F6 3B2 3W2 "
       "4F6 4B3 4W3 3F7 3B3 3W3 4F7 4B4 4W4 3B4 4B5 3B5 4B6 3B6 4B7 3B7 3W4 4W5 4W6 4W7 3W5 3W6 3W7",
}

# Interleaved zero bubble, pp=4, vp=2, M=8 (rounds of 4), rank 0, from PyTorch's
# ScheduleInterleavedZeroBubble rules by hand: warm-up (2-1)*4 + 3 = 7 forwards, then F and
# B (input gradient) with the W right after (rank 0 holds none back), chunks in rounds of 4.
IZB_PP4_VP2_M8_RANK0 = (
    "0F0 0F1 0F2 0F3 4F0 4F1 4F2 4F3 4B0 4W0 0F4 4B1 4W1 0F5 4B2 4W2 0F6 4B3 4W3 0F7 0B0 0W0 "
    "4F4 0B1 0W1 4F5 0B2 0W2 4F6 0B3 0W3 4F7 4B4 4W4 4B5 4W5 4B6 4W6 4B7 4W7 0B4 0W4 0B5 0W5 0B6 0W6 0B7 0W7"
)

# DualPipe, pp=4, M=8, every rank from the eight steps of deepseek-ai/DualPipe's
# DualPipe.step by hand (half ranks n=2; rank r's half rank h=min(r,3-r); ranks 2 and 3
# swap phases; ranks 1 and 2 are the middle ranks whose first step-4 pair is not overlapped).
DUALPIPE_PP4_M8 = """
0: 0F0 0F1 0F2 7F4 7B4 7W4 7F5 0F3&7B5 7F6&0B0 7B6 7F7&0B1 7B7 0B2 0W2 0B3 0W3
1: 1F0 6F4 1F1 6F5 1F2 6B4 6F6&1B0 1F3&6B5 6F7&1B1 6B6 1B2 6B7 1B3 6W7 1W3
2: 5F4 2F0 5F5 2F1 5F6 2B0 2F2&5B4 5F7&2B1 2F3&5B5 2B2 5B6 2B3 5B7 2W3 5W7
3: 4F4 4F5 4F6 3F0 3B0 3W0 3F1 4F7&3B1 3F2&4B4 3B2 3F3&4B5 3B3 4B6 4W6 4B7 4W7
"""


def test_zb_v_matches_the_hand_worked_order() -> None:
    text = rows(S.build("zb-v", 4, 2, 8).to_text().split("\n", 1)[1])
    for r, order in ZBV_PP4_M8.items():
        assert text[r] == order


def test_interleaved_zb_matches_the_hand_worked_order() -> None:
    assert rows(S.build("interleaved-zb", 4, 2, 8).to_text())[0] == IZB_PP4_VP2_M8_RANK0


def test_dualpipe_matches_the_hand_worked_order() -> None:
    sched = S.build("dualpipe", 4, 2, 8)
    body = "\n".join(line for line in sched.to_text().splitlines() if line[0].isdigit())
    assert rows(body) == rows(DUALPIPE_PP4_M8)
    assert sched.placement == (0, 1, 2, 3, 3, 2, 1, 0) and sched.chains == 2 and sched.mixed


@pytest.mark.parametrize("p,m", list(itertools.product(range(1, 9), [1, 2, 3, 5, 8, 13, 16])))
def test_interleaved_zb_at_vp1_is_zb_h1(p: int, m: int) -> None:
    # PyTorch's ScheduleInterleavedZeroBubble with one stage per rank holds back r W passes
    # after 1F1B's warm-up of p-r-1: exactly ZB-H1's rule (Qi et al. 2023 §3.1)
    assert S.build("interleaved-zb", p, 1, m).actions == S.build("zb-h1", p, 1, m).actions


# ---------------------------------------------------------------- bubbles with uniform costs


def test_interleaved_zb_bubble_against_interleaved_1f1b() -> None:
    # the figures: F = B = W = 1 per chunk, pp=4, vp=2, M=8: about 0.06 vs 0.16.
    # Interleaved 1F1B: (p-1)/(v*m + p-1) = 3/19 (Narayanan et al. 2021 §2.2.2); interleaved
    # zero bubble idles p-1 = 3 chunk-units of 48: 3/51.
    izb = evaluate(S.build("interleaved-zb", 4, 2, 8), unit)
    il = evaluate(S.build("interleaved", 4, 2, 8), lambda a: {"F": 1.0, "B": 2.0}[a.kind])
    assert izb.bubble_fraction == pytest.approx(3 / 51, abs=1e-12)
    assert il.bubble_fraction == pytest.approx(3 / 19, abs=1e-12)
    assert izb.bubble_fraction == pytest.approx(0.06, abs=0.005) and il.bubble_fraction == pytest.approx(0.16, abs=0.005)


@pytest.mark.parametrize("p", range(1, 9))
def test_zb_v_idles_only_the_start_up_every_pipeline_pays(p: int) -> None:
    # "ZB-V ... achieves minimal idle time within the same memory constraints as 1F1B"
    # (Qi et al.): with T_F = T_B = T_W the last rank cannot start before p-1 chunk
    # forwards, so its idle is at least (p-1) T_F; ZB-V idles exactly that on every rank
    # (a rate of (p-1)/(6m): half ZB-H1's (p-1)/(3m) at the same peak memory).
    for m in range(2 * p, 2 * p + 6):
        sched = S.build("zb-v", p, 2, m)
        ev = evaluate(sched, unit)
        assert ev.makespan == pytest.approx((p - 1) + 6 * m, abs=1e-9)
        assert all(ev.makespan - ev.busy[r] == pytest.approx(p - 1, abs=1e-9) for r in range(p))
        # peak: 2p chunk activations = p whole micro-batches, 1F1B's peak on rank 0
        assert max(peak_in_flight(sched).values()) == 2 * p


def _dualpipe_costs(sched: Schedule, f: float, b_input: float, w: float):
    """Per-chunk costs: F, B = the input gradient alone when the W comes later, else the
    full backward b_input + w (DeepSeek's B)."""
    def cost(a: Action) -> float:
        if a.kind == "F":
            return f
        if a.kind == "W":
            return w
        return b_input if sched.has_w(a.stage, a.microbatch) else b_input + w
    return cost


@pytest.mark.parametrize("name,p", [("dualpipe", 2), ("dualpipe", 4), ("dualpipe", 6), ("dualpipe", 8),
                                    ("dualpipe-v", 1), ("dualpipe-v", 2), ("dualpipe-v", 3), ("dualpipe-v", 4)])
def test_dualpipe_bubble_is_deepseeks_formula(name: str, p: int) -> None:
    # DeepSeek-V3 Table 2 / deepseek-ai/DualPipe README: bubble (PP/2 - 1)(F&B + B - 3W),
    # B the full backward, F&B the two overlapped chunks, PP the pipeline stages (DualPipe:
    # pp ranks; DualPipeV: 2pp stages on pp ranks); activation per device PP + 1.
    PP = p if name == "dualpipe" else 2 * p
    for m in (2 * p, 2 * p + 2, 4 * p + 4):
        sched = S.build(name, p, 2, m)
        for f, bi, w, fb in [(1, 1, 1, 3), (1, 1, 1, 2.5), (1, 1, 1, 2)]:  # uniform chunks; F&B <= F + B
            ev = evaluate(sched, _dualpipe_costs(sched, f, bi, w), overlap_cost=lambda a, b: fb)
            bubble = max(ev.makespan - ev.busy[r] for r in range(p))
            assert bubble == pytest.approx((PP / 2 - 1) * (fb + (bi + w) - 3 * w), abs=1e-9), (m, f, bi, w, fb)
        assert max(peak_in_flight(sched).values()) == PP + 1


def test_dualpipe_runs_each_stage_on_half_the_microbatches() -> None:
    sched = S.build("dualpipe", 4, 2, 8)
    for s in range(8):
        fw = {a.microbatch for acts in sched.actions.values() for a in acts if a.stage == s and a.kind == "F"}
        assert fw == (set(range(4)) if s < 4 else set(range(4, 8)))
    # the pipeline is fed from both ends: the embedding stages 0 and 4 sit on ranks 0 and 3
    assert [s for s in range(8) if sched.is_first(s)] == [0, 4]
    assert [sched.placement[s] for s in (0, 4)] == [0, 3]


# ---------------------------------------------------------------- constraints and the validator


def _documented_ok(name: str, p: int, v: int, m: int) -> bool:
    """The constraints as the generators' sources state them, re-derived here."""
    if name == "interleaved-zb":
        return v == 1 or m % max(1, m // p) == 0  # "a multiple of the number of rounds"
    if name == "zb-v":
        return v == 2  # "ZBV requires exactly 2 stages per rank"
    if name == "dualpipe":
        return v == 2 and p % 2 == 0 and m % 2 == 0 and m >= 2 * p  # DualPipe.step's asserts
    return v == 2 and m >= 2 * p  # DualPipeV.step: num_chunks >= num_ranks * 2


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("p", range(1, 9))
def test_valid_exactly_where_documented(name: str, p: int) -> None:
    for v, m in itertools.product(range(1, 5), [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 20]):
        ok = _documented_ok(name, p, v, m)
        assert (S.check(name, p, v, m) is None) == ok, (name, p, v, m)
        if not ok:
            with pytest.raises(SimtrainError) as e:
                S.build(name, p, v, m)
            assert "\n" not in str(e.value)
            continue
        sched = S.build(name, p, v, m)  # structure + deadlock check
        validate(sched)
        for r, acts in sched.actions.items():
            assert all(sched.placement[a.stage] == r for a in acts)
        fb = sum(1 for acts in sched.actions.values() for a in acts if a.kind in "FB")
        assert fb == 2 * p * v * m // sched.chains  # every (stage, micro-batch) on its route


def test_constraint_messages_are_one_line_with_a_fix() -> None:
    assert S.check("zb-v", 4, 1, 8) == (
        "schedule 'zb-v' runs exactly two model chunks per pipeline rank (a V: stages r and 2pp-1-r), "
        "but parallel.vp = 1: set parallel.vp = 2")
    assert S.check("dualpipe", 3, 2, 8).endswith("needs an even parallel.pp, not 3: use 2 or 4")
    assert S.check("dualpipe", 4, 2, 6) == (
        "dualpipe needs micro-batches per replica (6) to be even and at least twice the pipeline stages "
        "(2 x 4 = 8): use 8")
    assert S.check("dualpipe", 4, 2, 9).endswith("use 8 or 10")
    assert S.check("dualpipe-v", 4, 2, 7).endswith("use 8")
    why = S.check("interleaved-zb", 4, 2, 9)
    assert why.startswith("interleaved-zb needs micro-batches per replica (9) to be a multiple of its rounds")
    assert why.endswith("use 8 or 10")


def test_text_round_trip_keeps_placement_chains_and_pairs() -> None:
    for name in NEW:
        sched = S.build(name, 4, 2, 8)
        back = S.from_text(sched.to_text(), 4, 2, 8)
        assert back.actions == sched.actions and back.placement == sched.placement
        assert back.chains == sched.chains and back.overlapped == sched.overlapped and back.mixed == sched.mixed
    p = parse_text("chains: 2\n0: 0F0&1B1 0B0\n")
    assert p.chains == 2 and p.overlapped == {(0, 0)} and p.actions[0][1] == Action(1, "B", 1)


def _reject(text: str, pp: int, vp: int, m: int) -> str:
    with pytest.raises(ScheduleError) as e:
        S.from_text(text, pp, vp, m)
    return str(e.value)


def test_bad_v_and_chain_schedules_are_rejected() -> None:
    v = "placement: 0 1 1 0\n"
    # off the route: micro-batch 1 belongs to chain 1 (stages 2-3)
    assert "off micro-batch 1's route (stages 2-3)" in _reject(
        v + "chains: 2\n0: 0F0 0F1 0B0\n1: 1F0 1B0\n", 2, 2, 2)
    # a W missing in a split schedule that is not declared mixed
    assert "never runs" in _reject(v + "0: 0F0 3F0 3B0 0B0 0W0\n1: 1F0 2F0 2B0 2W0 1B0 1W0\n", 2, 2, 1)
    # a pair whose second action needs the first cannot overlap
    msg = _reject(v + "0: 0F0 3F0&3B0 0B0\n1: 1F0 2F0 2B0 1B0\n", 2, 2, 1)
    assert "3F0&3B0 cannot overlap" in msg
    # placement as text that does not map every stage
    assert "does not map" in _reject("placement: 0 1 1\n0: 0F0\n", 2, 2, 1)


def test_table_rows_for_fixed_chunk_schedules() -> None:
    row = analyse("dualpipe", 8, 2, 20)
    assert row.valid and row.peak_microbatches == 9  # PP + 1 whole micro-batches (DeepSeek)
    assert row.p2p_sends == 2 * (8 - 1) * 20  # each micro-batch crosses 7 rank boundaries each way
    zbv = analyse("zb-v", 4, 2, 8)
    assert zbv.peak_microbatches == 4  # 1F1B's peak: pp micro-batches
    assert zbv.p2p_sends == 2 * (8 - 2) * 8  # the V's turn (stages 3 -> 4) stays on rank 3


# ---------------------------------------------------------------- through the engine


def _uniform_engine_plan(pp: int, m: int, schedule: str):
    """A plan whose every chunk costs F = B = W = 1 with free communication."""
    import dataclasses

    from simtrain.engine.plan import make_plan
    from simtrain.scenario.config import load_scenario
    from simtrain.workload.costs import LayerCost

    layers = pp if schedule == "dualpipe" else 2 * pp  # a chunk is one layer either way
    s = load_scenario("llama3-405b-8k", [
        "cluster.gpus=0", f"parallel.pp={pp}", "parallel.dp=1", "parallel.tp=1", "parallel.vp=2",
        'model.name="llama3-8b"', f"model.num_hidden_layers={layers}", "parallel.first_stage_layers=-1",
        "parallel.last_stage_layers=-1", f"training.global_batch={m}", "parallel.zero=0", 'engine.comm="free"',
        f'schedule.name="{schedule}"'])
    plan = make_plan(s)
    lc = LayerCost((1.0, 0.0), (1.0, 0.0), 1.0, 0.0, 0.0, 1.0, 0.0)
    stages = tuple(dataclasses.replace(st, layer=lc, embed=None, head=None) for st in plan.stages)
    return dataclasses.replace(plan, stages=stages, optimizer_s={r: 0.0 for r in range(pp)})


@pytest.mark.parametrize("schedule,pp,m", [("zb-v", 4, 8), ("interleaved-zb", 4, 8), ("dualpipe", 4, 8),
                                           ("dualpipe", 8, 20), ("dualpipe-v", 4, 10)])
def test_engine_step_equals_the_schedule_evaluation(schedule: str, pp: int, m: int) -> None:
    # the engine runs a full backward as input + weight gradient (2 units) and overlapped
    # pairs one after the other: the evaluator with the same costs must give the same step
    from simtrain.analysis.metrics import summarize
    from simtrain.engine.actions import Engine

    plan = _uniform_engine_plan(pp, m, schedule)
    res = summarize(plan, Engine(plan).run())
    sched = plan.schedule
    ev = evaluate(sched, _dualpipe_costs(sched, 1.0, 1.0, 1.0))
    assert res.step_time_s == pytest.approx(ev.makespan, rel=1e-12)


@pytest.mark.parametrize("schedule", ["zb-v", "interleaved-zb", "dualpipe", "dualpipe-v"])
def test_symmetric_equals_per_rank_and_flops_match_1f1b(schedule: str) -> None:
    from simtrain.analysis.run import simulate
    from simtrain.scenario.config import load_scenario

    ov = ['model.name="llama3-8b"', "model.num_hidden_layers=16", "cluster.gpus=0", "parallel.tp=2",
          "parallel.pp=4", "parallel.dp=2", "parallel.vp=2", f'schedule.name="{schedule}"', "parallel.zero=1",
          "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
          "training.seq_len=1024"]
    a = simulate(load_scenario("llama3-405b-8k", ov))
    b = simulate(load_scenario("llama3-405b-8k", ov + ['engine.mode="per-rank"']))
    assert b.step_time_s == pytest.approx(a.step_time_s, rel=1e-9)
    for part in a.breakdown:
        assert b.breakdown[part] == pytest.approx(a.breakdown[part], rel=1e-9, abs=1e-12), part
    # the same model work whatever the schedule: MFU x step time is the model FLOPs
    base = simulate(load_scenario("llama3-405b-8k", ov[:6] + ['schedule.name="1f1b"', "parallel.vp=1"] + ov[8:]))
    assert a.mfu * a.step_time_s == pytest.approx(base.mfu * base.step_time_s, rel=1e-9)
    from simtrain.workload.memory import estimate

    params_a = sum(s.params for s in estimate(a.extra["plan"]).per_stage)
    params_b = sum(s.params for s in estimate(base.extra["plan"]).per_stage)
    # DualPipe keeps two copies of every stage (DeepSeek-V3 §3.2.1: "two copies of the model
    # parameters"); the single-chain schedules hold the model once
    assert params_a == pytest.approx((2 if schedule == "dualpipe" else 1) * params_b, rel=1e-9)
