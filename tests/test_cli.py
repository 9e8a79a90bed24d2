"""The command line: real output, clear one-line errors, files written."""

import json
import subprocess
import sys

import pytest

from simtrain.analysis.metrics import utilization
from simtrain.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mfu_arithmetic_reproduces_seed_002():
    # 7B model on 256 A100s (312 TFLOP/s), 2048 x 4096 tokens per step in 12.7 s -> 35%
    u = utilization(6 * 7e9, 2048 * 4096, 12.7, 256, 312e12)
    assert round(u, 2) == 0.35
    assert u == pytest.approx(6 * 7e9 * 2048 * 4096 / 12.7 / (256 * 312e12), rel=1e-12)


def test_run_json_has_the_documented_keys(capsys, small_overrides):
    code, out, _ = run_cli(capsys, "run", *sum((["--set", o] for o in small_overrides), []), "--json")
    assert code == 0
    data = json.loads(out)
    for key in ["step_time_s", "mfu", "hfu", "tflops_per_gpu", "tokens_per_s", "bubble_fraction",
                "model_flops_per_token", "num_gpus", "breakdown"]:
        assert key in data
    assert data["num_gpus"] == 16
    assert data["tokens_per_s"] == pytest.approx(16 * 2048 / data["step_time_s"], rel=1e-9)


def test_run_writes_timeline_and_trace(tmp_path, capsys, small_overrides):
    png, svg, trace = tmp_path / "t.png", tmp_path / "t.svg", tmp_path / "t.json"
    args = sum((["--set", o] for o in small_overrides), [])
    assert run_cli(capsys, "run", *args, "--timeline", str(png), "--trace", str(trace))[0] == 0
    assert run_cli(capsys, "run", *args, "--timeline", str(svg))[0] == 0
    assert png.stat().st_size > 1000 and svg.stat().st_size > 1000
    doc = json.loads(trace.read_text())
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    names = {e["name"] for e in spans}
    assert {"F0", "B0", "F3", "B3"} <= names
    assert any(n.endswith("(dp)") for n in names) and any(n.endswith("(tp)") for n in names)
    assert len({e["pid"] for e in spans}) == 4  # one track per simulated device (PP=4, symmetric)
    assert all(e["dur"] >= 0 for e in spans)


def test_timeline_rows_have_one_row_per_stage_and_the_spans(small_overrides):
    from simtrain.analysis.run import simulate
    from simtrain.plots.timeline import timeline_rows
    from simtrain.scenario.config import load_scenario

    res = simulate(load_scenario(None, small_overrides))
    devs = list(res.extra["plan"].simulated)
    rows = timeline_rows(res.records, devs)
    assert list(rows) == devs
    for d in devs:
        labels = [b.label for b in rows[d] if b.kind == "F"]
        assert labels == [f"F{i}" for i in range(8)]  # 16 / (DP2 x micro-batch 1) = 8 micro-batches, one bar each


@pytest.mark.parametrize("args,field", [
    (["--set", "cluster.gpus=1000"], "cluster.gpus"),
    (["--set", "parallel.tp=3"], "parallel.tp"),
    (["--set", "parallel.tpp=2"], "parallel.tpp"),
    (["--set", "parallel.tp=eight"], "parallel.tp"),
    (["no-such-scenario"], "scenario"),
    (["--set", "training.global_batch=100"], "training.global_batch"),
    (["--set", "model.name=\"llama9\""], "model.name"),
    (["--set", "schedule.name=\"zigzag\""], "schedule.name"),
    (["--set", "parallel.recompute=\"some\""], "parallel.recompute"),
    (["--timeline", "x.jpg"], "--timeline"),
])
def test_bad_input_is_one_clear_line(capsys, args, field):
    code, out, err = run_cli(capsys, "run", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert field in lines[0]
    assert "Traceback" not in err


def test_bad_input_from_a_real_process_has_no_traceback():
    p = subprocess.run([sys.executable, "-m", "simtrain.cli", "run", "--set", "parallel.tp=3"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "parallel.tp = 3" in p.stderr and "divide" in p.stderr


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "schedules" in out


def test_timeline_of_a_large_per_rank_run_shows_one_row_per_stage_and_the_straggler(tmp_path, capsys):
    from simtrain.analysis.run import simulate
    from simtrain.commands.run import MAX_TIMELINE_ROWS, timeline_devices
    from simtrain.scenario.config import load_scenario

    ov = ['model.name="llama3-8b"', "cluster.gpus=0", "parallel.tp=2", "parallel.pp=4", "parallel.dp=16", "parallel.vp=1",
          'schedule.name="1f1b"', "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
          "training.global_batch=64", "training.seq_len=2048", 'engine.mode="per-rank"',
          "whatif.slow_devices=[37]", "whatif.slowdown=1.3"]
    res = simulate(load_scenario(None, ov))
    plan = res.extra["plan"]
    assert len(plan.simulated) == 128 > MAX_TIMELINE_ROWS
    rows = timeline_devices(plan, res)
    assert sorted(plan.layout.coord(d).pp for d in rows[:-1]) == [0, 1, 2, 3] and rows[-1] == 37
    png = tmp_path / "t.png"
    assert main(["run", *sum((["--set", o] for o in ov), []), "--timeline", str(png)]) == 0
    assert png.stat().st_size > 1000
