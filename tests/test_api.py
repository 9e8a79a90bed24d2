"""The Python API equals the CLI: simulate from a path, a dict or a Scenario with overrides,
to_dict() is `run --json`, sweep/search/compare rows are the commands' rows, timeline and
trace write their files, and bad input raises the one-line SimtrainError."""

import json
import sys

import pytest

import simtrain
from simtrain.cli import main
from simtrain.scenario.config import scenario_to_dict
from tests.sweep_cases import TINY, scenario_file

SMALL = {
    "name": "small",
    "model": {"name": "llama3-8b"},
    "cluster": {"topology": "dgx-h100", "gpus": 16},
    "parallel": {"tp": 2, "pp": 4},
    "training": {"seq_len": 2048, "global_batch": 16},
    "schedule": {"name": "1f1b"},
}


SMALL_TOML = ('name = "small"\n[model]\nname = "llama3-8b"\n[cluster]\ngpus = 16\n[parallel]\ntp = 2\npp = 4\n'
              '[training]\nseq_len = 2048\nglobal_batch = 16\n[schedule]\nname = "1f1b"\n')


def test_simulate_takes_a_name_a_dict_or_a_scenario_with_overrides(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_TOML)
    from_file = simtrain.simulate(str(path), overrides={"parallel.micro_batch": 2})
    from_dict = simtrain.simulate(SMALL, overrides=["parallel.micro_batch=2"])
    s = simtrain.load_scenario(SMALL)
    from_scenario = simtrain.simulate(s, {"parallel.micro_batch": 2})
    assert from_file.step_time_s == from_dict.step_time_s == from_scenario.step_time_s
    assert from_dict.layout["micro_batch"] == 2 and from_dict.layout["microbatches_per_replica"] == 4  # 16 / (2 x 2)
    assert simtrain.load_scenario(scenario_to_dict(s)) == simtrain.load_scenario(SMALL)  # a round trip


def test_stack_overrides_work_as_a_dict_too():
    """{"stack.launch_us": 3} is --set stack.launch_us=3 (the software stack's host cost per launch)."""
    a = simtrain.simulate(SMALL, {"stack.launch_us": 30})
    b = simtrain.simulate(SMALL, ["stack.launch_us=30"])
    assert a.step_time_s == b.step_time_s
    assert simtrain.load_scenario(SMALL, {"stack.launch_us": 30}).stack.launch_us == 30


def test_to_dict_is_what_run_json_prints(tmp_path, capsys):
    r = simtrain.simulate(SMALL)
    (tmp_path / "small.toml").write_text(SMALL_TOML)
    assert main(["run", str(tmp_path / "small.toml"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    mine = json.loads(json.dumps(r.to_dict(), default=float))
    assert set(mine) == set(cli)
    for k in ("step_time_s", "mfu", "breakdown", "layout", "memory", "schedule_params", "warnings"):
        assert mine[k] == cli[k], k
    assert r.memory is r.extra["memory"] and r.warnings == []


def test_sweep_rows_equal_the_cli_and_convert_to_a_dataframe(tmp_path, capsys):
    src = scenario_file(tmp_path, TINY, "tiny")
    sw = simtrain.sweep(src, grid={"parallel.tp": [1, 2], "parallel.micro_batch": [1, 2, 16]})
    assert main(["sweep", src, "--grid", "parallel.tp=1,2", "--grid", "parallel.micro_batch=1,2,16", "--json",
                 "--out", str(tmp_path / "s.csv"), "--jobs", "1", "--no-progress"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert [{c: r.get(c) for c in sw.columns} for r in sw.rows] == cli
    assert sw.best(1)[0]["mfu"] == max(r["mfu"] for r in cli if r["valid"] and r["fits_in_memory"])
    pd = pytest.importorskip("pandas")
    df = sw.to_dataframe()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == sw.columns and len(df) == 6
    assert df["mfu"].max() == pytest.approx(max(r["mfu"] for r in cli if r["mfu"] is not None), rel=1e-12)


def test_to_dataframe_without_pandas_says_how_to_get_it(tmp_path, monkeypatch):
    sw = simtrain.SweepResult([{"index": 0}], ["index"], [])
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(simtrain.SimtrainError, match=r'pip install "simtrain\[pandas\]"') as e:
        sw.to_dataframe()
    assert "\n" not in str(e.value)


def test_search_and_compare_equal_their_commands(tmp_path, capsys):
    src = scenario_file(tmp_path, TINY, "tiny")
    space = {"tp": [1, 2], "pp": [1], "cp": [1], "vp": [1], "micro_batch": [1, 2], "recompute": ["none"],
             "sequence_parallel": [False]}
    found = simtrain.search(src, top=2, space=space)
    assert main(["search", src, "--tp", "1,2", "--pp", "1", "--cp", "1", "--vp", "1", "--micro-batch", "1,2",
                 "--recompute", "none", "--sp", "false", "--top", "2", "--json", "--jobs", "1", "--no-progress"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert found.winner["mfu"] == cli["winner"]["mfu"] and found.counts == cli["counts"]
    cmp = simtrain.compare(SMALL, b_overrides={"parallel.micro_batch": 2})
    d = cmp.to_dict()
    assert sum(d["attribution"].values()) == pytest.approx(d["mfu_difference"], abs=1e-12)  # exact by construction
    assert d["a"]["mfu"] == simtrain.simulate(SMALL).mfu
    assert "B = small --set parallel.micro_batch=2" in cmp.text()


def test_timeline_and_trace_write_what_run_writes(tmp_path, capsys):
    r = simtrain.simulate(SMALL, link_series=True)  # as run --trace does
    png = simtrain.timeline(r, tmp_path / "t.png")
    assert png.stat().st_size > 1000
    mine = json.loads(simtrain.trace(r, tmp_path / "t.json").read_text())
    (tmp_path / "small.toml").write_text(SMALL_TOML)
    assert main(["run", str(tmp_path / "small.toml"), "--trace", str(tmp_path / "cli.json")]) == 0
    capsys.readouterr()
    cli = json.loads((tmp_path / "cli.json").read_text())
    spans = lambda doc: [e for e in doc["traceEvents"] if e["ph"] == "X"]  # noqa: E731
    assert spans(mine) == spans(cli) and spans(mine)
    counters = lambda doc: [e for e in doc["traceEvents"] if e["ph"] == "C"]  # noqa: E731
    assert counters(mine) == counters(cli)
    assert {e["pid"] for e in spans(mine)} <= set(r.extra["plan"].simulated) | {e["pid"] for e in spans(cli)}


@pytest.mark.parametrize("call, fragment", [
    (lambda: simtrain.load_scenario(123), "scenario = 123: expected a catalog name, a path, a dict"),
    (lambda: simtrain.simulate(SMALL, {"parallel.tpp": 2}), "did you mean 'tp'"),
    (lambda: simtrain.simulate(SMALL, {"paralel.tp": 2}), "did you mean 'parallel'"),
    (lambda: simtrain.simulate(SMALL, {"stak.launch_us": 2}), "did you mean 'stack'"),
    (lambda: simtrain.simulate({"model": {"name": "llama3-8b"}, "clusters": {}}), "unknown section [clusters]"),
    (lambda: simtrain.sweep(SMALL, grid={"parallel.tp": [1, 1]}), "appears twice"),
    (lambda: simtrain.sweep(SMALL, grid={}), "no grid given"),
    (lambda: simtrain.search(SMALL, space={"tensor": [1]}), "space key 'tensor'"),
    (lambda: simtrain.timeline(simtrain.simulate(SMALL), "t.pdf"), "end the name with .png or .svg"),
    (lambda: simtrain.compare(SMALL), "A and B are the same"),
])
def test_bad_input_raises_one_line(call, fragment):
    with pytest.raises(simtrain.SimtrainError) as e:
        call()
    assert fragment in str(e.value) and "\n" not in str(e.value)
