"""simtrain search: hand-worked winners, exact pruning, the MFU bound, the CLI."""

import csv
import dataclasses
import json

import pytest

from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.engine.plan import make_plan
from simtrain.explore.search import candidates, default_space, search
from simtrain.explore.sweep import Task, prepare_base, run_tasks
from simtrain.explore.sweep.base import point_scenario
from simtrain.explore.sweep.bound import mfu_bound
from tests.sweep_cases import TINY, WIDE, scenario_file


def setup(tmp_path, text, **space):
    base = prepare_base(scenario_file(tmp_path, text, "s"), [], [])
    s = point_scenario(base, {})
    sp = dataclasses.replace(default_space(s, 8, 8), **space)
    return base, sp


def test_pure_data_parallelism_wins_for_a_small_model(tmp_path):
    # A 0.2B model fits replicated on every GPU (0.2B x 18 B = 4 GB). Any TP adds exposed
    # all-reduces and shrinks the GEMMs; PP adds a bubble and point-to-point transfers; CP
    # adds K/V exchanges; recomputation adds work. With pure DP (8 replicas, 64 sequences) there
    # is no bubble, so the largest micro-batch (fewest, largest GEMMs) is best: TP1 PP1 CP1 DP8, mb 4.
    base, sp = setup(tmp_path, TINY, cp=(1, 2), vp=(1, 2), micro_batch=(1, 2, 4))
    res = search(base, sp, top=3, jobs=1, layers=4, world=8)
    w = res.ranked[0]
    assert (w["tp"], w["cp"], w["pp"], w["dp"], w["micro_batch"], w["recompute"]) == (1, 1, 1, 8, 4, "none")
    assert res.counts["simulated"] < 0.1 * res.counts["candidates"]  # duplicates and the bound prune the rest
    assert sum(res.counts[k] for k in ("invalid", "does not fit", "duplicate", "cannot win", "simulated")) == res.counts["candidates"]


def test_pruning_never_drops_a_top_k_layout(tmp_path):
    base, sp = setup(tmp_path, WIDE, tp=(1, 2, 4, 8), pp=(1, 2), cp=(1,), vp=(1, 2), micro_batch=(1, 4),
                     recompute=("none", "full"), sequence_parallel=(False, True))
    res = search(base, sp, top=3, jobs=1, layers=4, world=8)
    points = candidates(sp, 4, 8)
    brute = run_tasks(base, [Task(i, v) for i, v in enumerate(points)], 1)
    best = sorted((r["mfu"] for r in brute if r["valid"] and r["fits_in_memory"]), reverse=True)[:3]
    assert [r["mfu"] for r in res.ranked[:3]] == best
    pruned = [r for r in res.rows if r["status"] == "does not fit"]
    assert pruned and all(not b["fits_in_memory"] for b in brute if b["index"] in {r["index"] for r in pruned})
    for r in res.ranked:
        assert r["mfu"] <= r["mfu_bound"]


@pytest.mark.parametrize("values", [
    {"parallel.pp": 2, "parallel.vp": 2, "schedule.name": "interleaved", "parallel.micro_batch": 1},
    {"parallel.pp": 4, "schedule.name": "zb-h1", "parallel.tp": 2, "parallel.dp": 0},
    {"parallel.pp": 2, "parallel.recompute": "full", "parallel.tp": 4, "parallel.sequence_parallel": True},
    {"parallel.pp": 2, "schedule.name": "gpipe", "parallel.cp": 2, "parallel.tp": 2},
])
def test_mfu_bound_bounds_the_simulation(tmp_path, values):
    base = prepare_base(scenario_file(tmp_path, WIDE, "s"), [], [])
    s = point_scenario(base, {"parallel.tp": 2, "parallel.pp": 1, **values})
    r = simulate(s)
    plan = make_plan(s)
    assert r.mfu <= mfu_bound(plan, comm=True) <= mfu_bound(plan) <= 1.0


def test_cli_json_text_and_csv(tmp_path, capsys):
    src = scenario_file(tmp_path, TINY, "tiny")
    space = ["--tp", "1,2", "--pp", "1,2", "--cp", "1", "--vp", "1", "--micro-batch", "1,4", "--sp", "false",
             "--jobs", "1", "--no-progress"]
    assert main(["search", src, *space, "--json", "--top", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpus"] == 8 and data["global_batch"] == 64 and len(data["runners_up"]) == 1
    assert (data["winner"]["tp"], data["winner"]["pp"]) == (1, 1) and data["winner"]["mfu"] <= data["winner"]["mfu_bound"]
    # the causes of the winner's lead add up to it (simtrain.analysis.compare's exact decomposition)
    lead = data["winner"]["mfu"] - data["runners_up"][0]["mfu"]
    assert lead >= 0 and sum(data["winner_vs_runner_up"].values()) == pytest.approx(lead, abs=1e-6)
    out = tmp_path / "c.csv"
    assert main(["search", src, *space, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "winner: simtrain run" in text and "--set parallel.tp=1" in text
    assert "why #1: +" in text and "MFU points over #2" in text
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} <= {"simulated", "cannot win", "does not fit", "invalid", "duplicate"} and len(rows) == data["counts"]["candidates"]


@pytest.mark.parametrize("argv, fragment", [
    (["--tp", "1,x"], "--tp '1,x': 'x' is not a positive whole number"),
    (["--schedules", "1f1b,foo"], "unknown schedule 'foo'"),
    (["--recompute", "some"], "'some' is not a mode"),
    (["--top", "0"], "--top 0: must be at least 1"),
])
def test_cli_errors(tmp_path, capsys, argv, fragment):
    code = main(["search", scenario_file(tmp_path, TINY, "tiny"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


WIDE5 = WIDE.replace("num_hidden_layers = 4", "num_hidden_layers = 5").replace('name = "wide-4l"', 'name = "wide-5l"')


def test_uneven_splits_are_in_the_default_space_and_pruning_matches_brute_force(tmp_path):
    """5 layers on PP2 (3 + 2) and PP4 (1 1 2 1 ... balanced), zero-bubble and interleaved
    schedules: the pruned search's top 3 equal simulating every candidate."""
    base = prepare_base(scenario_file(tmp_path, WIDE5, "s"), [], [])
    s = point_scenario(base, {})
    sp = dataclasses.replace(default_space(s, 8, 8), tp=(1, 2, 4), cp=(1,), vp=(1, 2), micro_batch=(1, 2),
                             recompute=("none", "full"), sequence_parallel=(False,),
                             schedules=("1f1b", "interleaved", "zb-h1"))
    assert set(sp.pp) == {1, 2, 4, 8} - {8}  # every divisor of the GPUs up to the 5 layers
    res = search(base, sp, top=3, jobs=1, layers=5, world=8)
    points = candidates(sp, 5, 8)
    assert any(p["parallel.pp"] == 4 and p["parallel.vp"] == 1 for p in points)
    brute = run_tasks(base, [Task(i, v) for i, v in enumerate(points)], 1)
    best = sorted((r["mfu"] for r in brute if r["valid"] and r["fits_in_memory"]), reverse=True)[:3]
    assert [r["mfu"] for r in res.ranked[:3]] == best
    for r in res.ranked:
        assert r["mfu"] <= r["mfu_bound"]
    # rule 2 with one micro-batch in flight never drops a layout that fits
    by_index = {b["index"]: b for b in brute}
    for r in res.rows:
        if r["status"] == "does not fit":
            assert by_index[r["index"]]["fits_in_memory"] is False


def test_memory_lower_bound_is_below_the_estimate(tmp_path):
    from simtrain.explore.sweep.bound import bound_task

    base = prepare_base(scenario_file(tmp_path, WIDE5, "s"), [], [])
    s = point_scenario(base, {})
    sp = dataclasses.replace(default_space(s, 8, 8), schedules=("1f1b", "interleaved", "zb-h1", "llama3", "gpipe"))
    points = candidates(sp, 5, 8)[::7]
    checked = 0
    for i, v in enumerate(points):
        lb = bound_task(base, Task(i, v))
        full = run_tasks(base, [Task(i, v)], 1, opts={"simulate_unfit": False})[0]
        assert lb["valid"] == full["valid"], (v, lb["reason"], full["reason"])
        if lb["valid"] and full["peak_memory_gib"] is not None:
            assert lb["memory_bound_gib"] <= full["peak_memory_gib"] + 1e-9
            checked += 1
    assert checked > 20


CASES_COMM = [  # tp, pp, cp, sequence parallel, recompute, schedule, vp, async TP backward, cp algo
    (8, 4, 2, False, "full", "interleaved", 2, False, "ring"), (8, 4, 1, False, "none", "1f1b", 1, False, "allgather"),
    (8, 2, 1, False, "full", "zb-h1", 1, True, "allgather"), (8, 2, 2, True, "full", "interleaved", 2, True, "allgather"),
    (2, 2, 1, True, "none", "1f1b", 1, False, "ring"), (2, 1, 1, True, "full", "1f1b", 1, True, "ring"),
    (8, 2, 2, True, "none", "zb-h1", 1, True, "allgather"), (2, 1, 2, False, "none", "zb-h1", 1, False, "allgather"),
]


@pytest.mark.parametrize("tp,pp,cp,sp,rc,sched,vp,asy,cpalgo", CASES_COMM)
def test_step_time_bound_with_exposed_collectives_stays_below_the_simulation(tp, pp, cp, sp, rc, sched, vp, asy, cpalgo):
    """The search's bound adds the TP/CP collectives the engine cannot hide (each at its
    time alone): still a lower bound, and tighter than compute alone."""
    from simtrain.explore.sweep.bound import schedule_bound, step_time_bound
    from simtrain.scenario.config import load_scenario

    dp = 64 // (tp * pp * cp)
    s = load_scenario(None, ['model.name="llama3-8b"', "cluster.gpus=64", f"parallel.tp={tp}", f"parallel.pp={pp}",
                             f"parallel.cp={cp}", f"parallel.dp={dp}", f"parallel.sequence_parallel={str(sp).lower()}",
                             f'parallel.recompute="{rc}"', f'schedule.name="{sched}"', f"parallel.vp={vp}",
                             f"engine.async_tp_backward={str(asy).lower()}", f'parallel.cp_algo="{cpalgo}"',
                             "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
                             f"training.global_batch={dp * pp * 2}", "training.seq_len=8192"])
    r = simulate(s)
    plan = r.extra["plan"]
    assert step_time_bound(plan) < step_time_bound(plan, comm=True) <= r.step_time_s
    # the candidate's own schedule with those durations and idle-network transfers: tighter, still below
    assert step_time_bound(plan, comm=True) <= schedule_bound(plan) * (1 + 1e-12) and schedule_bound(plan) <= r.step_time_s


@pytest.mark.parametrize("ov", [
    ["parallel.pp=2", "parallel.vp=2", 'schedule.name="dualpipe"', "parallel.ep=8", "parallel.dp=32"],
    ["parallel.pp=4", "parallel.vp=2", 'schedule.name="zb-v"', "parallel.ep=8", "parallel.dp=16"],
    ["parallel.pp=4", "parallel.vp=2", 'schedule.name="interleaved"', "parallel.ep=4", "parallel.tp=2", "parallel.dp=8",
     "parallel.sequence_parallel=true"],
    ["parallel.pp=2", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.ep=8", "parallel.tp=2", "parallel.dp=16",
     "model.first_k_dense_replace=3"],
    # TP collectives on the network (no TP overlap): the attention block's reduce-scatter
    # beside its weight gradient, dense first layers, shared experts' TP pair
    ["parallel.pp=2", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.ep=8", "parallel.tp=2", "parallel.dp=16",
     "parallel.sequence_parallel=true", "engine.overlap_tp_comm=false", "engine.async_tp_backward=true",
     "model.first_k_dense_replace=3"],
    ["parallel.pp=2", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.ep=8", "parallel.tp=2", "parallel.dp=16",
     "parallel.sequence_parallel=true", "engine.overlap_tp_comm=false", "engine.async_tp_backward=true",
     "model.shared_expert_intermediate_size=4096"],
    ["parallel.pp=2", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.ep=8", "parallel.tp=2", "parallel.dp=16",
     "parallel.sequence_parallel=false", "engine.overlap_tp_comm=false", "engine.async_tp_backward=true"],
])
def test_bounds_of_mixture_of_experts_and_v_shaped_schedules_stay_below_the_simulation(ov):
    """MoE stages (dense first layers, exposed TP all-reduces, all-to-alls not counted),
    DualPipe's mixed backward and the V-shaped placements: the search's bounds hold, and
    phase 1 (`bound_task`) builds such candidates with their own placement."""
    from simtrain.explore.sweep.bound import bound_task, schedule_bound, step_time_bound
    from simtrain.scenario.config import load_scenario

    dp = next(int(o.split("=")[1]) for o in ov if o.startswith("parallel.dp="))
    ov = [f"training.global_batch={4 * dp}", "parallel.tp=1", *ov]
    s = load_scenario("mixtral-8x7b-64-h100", ov)
    r = simulate(s)
    plan = r.extra["plan"]
    assert step_time_bound(plan, comm=True) <= r.step_time_s
    assert schedule_bound(plan) <= r.step_time_s
    base = prepare_base("mixtral-8x7b-64-h100", ov, [])
    row = bound_task(base, Task(0, {}))
    assert row["valid"], row["reason"]
    if row["mfu_bound"] is None:  # rule 2: does not fit even with one micro-batch in flight
        assert not r.extra["memory"]["fits_in_memory"]
    else:
        assert r.mfu <= row["mfu_bound"]
