"""simtrain sweep: grid parsing and expansion, validity reasons, memory marks, executors."""

import csv
import json
import time

import pytest

from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.explore.sweep import Task, expand, parse_grid, prepare_base, run_tasks
from simtrain.explore.sweep.base import point_scenario
from simtrain.explore.sweep.evaluate import METRICS, Caches, evaluate, result_metrics
from simtrain.scenario.errors import SimtrainError
from tests.sweep_cases import TINY, WIDE, scenario_file

GRID = ["parallel.tp=1,2,4", "parallel.pp=1,2", "parallel.micro_batch=1,4", "parallel.recompute=none,selective"]


def sweep(tmp_path, grid=GRID, text=WIDE, jobs=1, **kw):
    axes = parse_grid(grid)
    base = prepare_base(scenario_file(tmp_path, text, "s"), [], [k for k, _ in axes])
    tasks = [Task(i, v) for i, v in enumerate(expand(axes))]
    return base, run_tasks(base, tasks, jobs, **kw)


def test_grid_values_are_typed_and_expanded_last_axis_fastest():
    axes = parse_grid(["parallel.tp=1,2", "parallel.recompute=none,full", "parallel.sequence_parallel=true,false"])
    assert axes[0] == ("parallel.tp", (1, 2))
    assert axes[2] == ("parallel.sequence_parallel", (True, False))
    pts = expand(axes)
    assert len(pts) == 8
    assert pts[:2] == [{"parallel.tp": 1, "parallel.recompute": "none", "parallel.sequence_parallel": True},
                       {"parallel.tp": 1, "parallel.recompute": "none", "parallel.sequence_parallel": False}]


@pytest.mark.parametrize("spec, fragment", [
    ("parallel.tp=x", "parallel.tp = 'x': expected a whole number"),
    ("parallel.tpp=1,2", "unknown key parallel.tpp; did you mean 'tp'?"),
    ("paralel.tp=1", "unknown section 'paralel'; did you mean 'parallel'?"),
    ("parallel.recompute=none,some", "'some': not a valid choice; use one of none, selective, op-selective, full"),
    ("parallel.tp", "expected section.key=v1,v2,..."),
    ("parallel.tp=1,,2", "empty value"),
    ("parallel.tp=1,1", "appears twice"),
])
def test_bad_grids_fail_with_one_line(spec, fragment):
    with pytest.raises(SimtrainError) as e:
        parse_grid([spec])
    assert fragment in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(f"--grid {spec!r}")


def test_stack_keys_are_a_grid_axis(tmp_path):
    # the software stack's values sweep like any scenario key: an unfused RMSNorm (eager ops)
    # costs time and keeps more activations than the fused kernel (seed 001's finding)
    axes = parse_grid(["stack.norm=fused,unfused", "stack.sustained_fraction=0.8,1"])
    assert axes == [("stack.norm", ("fused", "unfused")), ("stack.sustained_fraction", (0.8, 1.0))]
    with pytest.raises(SimtrainError, match="'weird': not a valid choice"):
        parse_grid(["stack.norm=fused,weird"])
    _, rows = sweep(tmp_path, grid=["stack.norm=fused,unfused"])
    fused, unfused = rows
    assert fused["stack.norm"] == "fused" and unfused["stack.norm"] == "unfused"
    assert unfused["step_time_s"] > fused["step_time_s"] and unfused["peak_memory_gib"] > fused["peak_memory_gib"]


def test_grid_key_given_twice():
    with pytest.raises(SimtrainError, match="given twice"):
        parse_grid(["parallel.tp=1", "parallel.tp=2"])


def test_rows_carry_validity_reasons_memory_and_fixed_batch(tmp_path):
    base, rows = sweep(tmp_path)
    assert base["cluster"]["gpus"] == 8 and base["parallel"]["dp"] == 0 and base["training"]["global_batch"] == 16
    assert len(rows) == 24 and [r["index"] for r in rows] == list(range(24))
    by = {(r["parallel.tp"], r["parallel.pp"], r["parallel.micro_batch"], r["parallel.recompute"]): r for r in rows}
    bad = by[(1, 1, 4, "none")]  # dp 8 x micro-batch 4 = 32 > 16 sequences
    assert not bad["valid"] and not bad["simulated"] and bad["mfu"] is None
    assert bad["reason"] == "training.global_batch = 16: not divisible by dp*micro_batch = 8*4 = 32; use 32 or 64"
    big = by[(1, 1, 1, "none")]  # 6B parameters x 18 bytes, unsharded
    assert big["valid"] and big["fits_in_memory"] is False and big["simulated"] and big["mfu"] > 0
    assert big["reason"].startswith("does not fit: peak") and big["peak_memory_gib"] > 80
    ok = by[(4, 2, 1, "none")]
    assert ok["valid"] and ok["fits_in_memory"] and ok["reason"] == "" and ok["dp"] == 1 and ok["microbatches"] == 16
    for r in rows:
        if r["valid"]:
            assert r["global_batch"] == 16 and r["tp"] * r["pp"] * r["dp"] == 8
            parts = sum(r[k] for k in r if k.startswith("breakdown_"))
            assert parts == pytest.approx(r["step_time_s"], rel=1e-9)


def test_rows_equal_simtrain_run_and_selective_shares_the_none_simulation(tmp_path):
    base, rows = sweep(tmp_path, ["parallel.tp=2,4", "parallel.recompute=none,selective,full"])
    for r in rows:
        s = point_scenario(base, {k: r[k] for k in ("parallel.tp", "parallel.recompute")})
        fresh = result_metrics(simulate(s))
        assert {m: r[m] for m in fresh} == fresh
    none, sel, full = rows[:3]
    assert {m: none[m] for m in METRICS} == {m: sel[m] for m in METRICS}  # FlashAttention: nothing to recompute
    assert full["step_time_s"] > none["step_time_s"] and full["hfu"] > full["mfu"]


def test_parallel_rows_equal_simtrain_run_over_pipeline_and_micro_batch(tmp_path):
    # the worker pool's rows (chunks grouped by parallel sizes, scenarios built in the
    # parent, routes shared between micro-batch sizes) against a fresh `simtrain run`
    grid = ["parallel.pp=1,2", "parallel.micro_batch=1,2", "parallel.recompute=none,full"]
    base, rows = sweep(tmp_path, grid, jobs=2)
    simulated = [r for r in rows if r["simulated"]]
    assert len(simulated) >= 6
    for r in simulated:
        s = point_scenario(base, {k: r[k] for k in ("parallel.pp", "parallel.micro_batch", "parallel.recompute")})
        fresh = result_metrics(simulate(s))
        assert {m: r[m] for m in fresh} == fresh


def test_caches_change_nothing(tmp_path):
    axes = parse_grid(GRID)
    base = prepare_base(scenario_file(tmp_path, WIDE, "s"), [], [k for k, _ in axes])
    tasks = [Task(i, v) for i, v in enumerate(expand(axes))]
    cold = [evaluate(base, t, Caches(None, None)) for t in tasks]
    warm_caches = Caches()
    warm = [evaluate(base, t, warm_caches) for t in reversed(tasks)][::-1]
    assert warm_caches.comm.hits > 0 and warm_caches.results.hits > 0
    assert cold == warm


def test_parallel_rows_equal_serial_rows(tmp_path):
    _, serial = sweep(tmp_path, jobs=1)
    _, parallel = sweep(tmp_path, jobs=2)
    assert parallel == serial


def test_ray_executor_equals_local(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'simtrain[ray]'); the Ray executor is optional")
    grid = ["parallel.tp=2,4", "parallel.pp=1,2", "parallel.micro_batch=1,4"]
    _, local = sweep(tmp_path, grid, jobs=1)
    t0 = time.perf_counter()
    _, on_ray = sweep(tmp_path, grid, jobs=2, executor="ray")
    print(f"ray sweep of {len(local)} layouts: {time.perf_counter() - t0:.1f} s including Ray start-up")
    assert on_ray == local


def test_cli_writes_csv_json_plot_and_prints_top_k(tmp_path, capsys):
    src = scenario_file(tmp_path, TINY, "tiny")
    out, png = tmp_path / "s.csv", tmp_path / "s.png"
    code = main(["sweep", src, "--grid", "parallel.tp=1,2", "--grid", "parallel.micro_batch=1,2,16",
                 "--out", str(out), "--plot", str(png), "--top", "3", "--jobs", "1", "--no-progress"])
    text, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert "6 layouts, 5 valid, 5 fit in memory, 1 invalid" in text
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["#", "tp", "micro_batch"] and len(lines) == 7  # header + 3 rows + why + wrote
    assert lines[5].startswith("  why #1: +") and "MFU points over #2" in lines[5]
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:3] == ["index", "parallel.tp", "parallel.micro_batch"]
    assert rows[2]["valid"] == "False" and "not divisible by dp*micro_batch" in rows[2]["reason"]
    assert png.stat().st_size > 1000
    code = main(["sweep", src, "--grid", "parallel.tp=1,2", "--out", str(out), "--json", "--jobs", "1", "--no-progress"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["parallel.tp"] for r in data] == [1, 2] and all(r["valid"] for r in data)


def test_cli_skip_oom_and_parquet(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed; Parquet output is optional")
    src = scenario_file(tmp_path, WIDE, "wide")
    pq = tmp_path / "s.parquet"
    code = main(["sweep", src, "--set", "parallel.pp=1", "--grid", "parallel.tp=1,4", "--out", str(tmp_path / "s.csv"), "--parquet", str(pq),
                 "--skip-oom", "--jobs", "1", "--no-progress"])
    capsys.readouterr()
    table = pa.read_table(pq).to_pylist()
    assert code == 0 and [r["fits_in_memory"] for r in table] == [False, True]
    assert table[0]["simulated"] is False and table[0]["mfu"] is None and table[1]["mfu"] > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--grid", "parallel.tp=x"], "--grid 'parallel.tp=x': parallel.tp = 'x': expected a whole number"),
    (["--grid", "training.seq=1"], "unknown key training.seq; did you mean 'seq_len'?"),
    ([], "no --grid given"),
    (["--grid", "parallel.tp=1", "--jobs", "0", "--executor", "local", "--plot", "x.pdf"], "--plot 'x.pdf': unsupported format"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, fragment):
    code = main(["sweep", scenario_file(tmp_path, TINY, "tiny"), "--out", str(tmp_path / "x.csv"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and fragment in err


def test_rows_equal_simtrain_run_when_the_stack_forces_rings(tmp_path):
    # stack.ring_gather_scatter changes which algorithm a Comm picks for all-gather and
    # reduce-scatter: the worker's Comm cache must not hand one point's choices to the other
    # (two nodes, FSDP over all 16 ranks: a ring and NCCL's two-level scheme differ there)
    text = TINY.replace("gpus = 8", "gpus = 16").replace("pp = 1", "pp = 1\nzero = 3")
    base, rows = sweep(tmp_path, ["stack.ring_gather_scatter=false,true"], text=text)
    assert len(rows) == 2 and all(r["simulated"] for r in rows)
    assert rows[0]["step_time_s"] != rows[1]["step_time_s"]
    for r in rows:
        s = point_scenario(base, {"stack.ring_gather_scatter": r["stack.ring_gather_scatter"]})
        fresh = result_metrics(simulate(s))
        assert {m: r[m] for m in fresh} == fresh
