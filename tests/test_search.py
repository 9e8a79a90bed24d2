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
    assert r.mfu <= mfu_bound(make_plan(s)) <= 1.0


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
