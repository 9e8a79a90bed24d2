"""Values no run can have, each refused in one line naming the field, the value and the fix:
SM counts that would leave compute none, host costs and link rates that would make a step
of centuries, measured steps the simulator cannot reach, grids where every layout is
refused; and the few files and options whose errors have to say where they come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from simtrain.cli import main
from tests.test_bad_files import assert_one_line_error


@pytest.mark.parametrize("sets, fragments", [
    # an H100 has 132 SMs: communication kernels holding all of them leave compute none
    (["stack.nccl_channels_intra_node=132"], ("stack.nccl_channels_intra_node = 132", "fewer than 132")),
    (["stack.nccl_channels_inter_node=500"], ("stack.nccl_channels_inter_node = 500", "fewer than 132")),
    (["stack.ep_overlap_sms=1000"], ("stack.ep_overlap_sms = 1000", "fewer than 132")),
    (["device.sms=24"], ("stack.nccl_channels_intra_node = 24", "which has 24")),
    # 1e300 us a launch made a step of 1e297 s
    (["stack.launch_us=1e300"], ("stack.launch_us", "is above 10000")),
    (["stack.workspace_gib=1e300"], ("stack.workspace_gib", "is above 10000")),
    (["whatif.compute_jitter=5"], ("whatif.compute_jitter = 5.0", "[0, 0.5)")),
    # nan's fix names a value the field takes (it said "= 1.5", itself refused for shares)
    (["stack.fragmentation=nan"], ("stack.fragmentation = nan", "fragmentation = 0.05 (its default)")),
    (["cluster.nvlink_gbps=1e-300"], ("cluster.nvlink_gbps", "at least 0.001 Gb/s")),
    (["cluster.nvlink_latency_us=1e300"], ("cluster.nvlink_latency_us", "[0, 1e6]")),
    (['stack.norm_saves="outputs"'], ("stack.norm_saves = 'outputs'", "input, output")),
])
def test_run_refuses_values_no_run_can_have(sets: list[str], fragments: tuple[str, ...],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "nemo-8b-8", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert_one_line_error(argv, capsys, *fragments)


def test_sm_counts_just_below_the_device_still_run(capsys: pytest.CaptureFixture[str]) -> None:
    # 131 of 132 SMs held: compute beside a collective crawls but the step stays finite and
    # slower than with the default 24 (the penalty grows with the blocks held)
    assert main(["run", "nemo-8b-8", "--no-progress", "--json"]) == 0
    import json

    base = json.loads(capsys.readouterr().out)
    assert main(["run", "nemo-8b-8", "--no-progress", "--json", "--set", "stack.nccl_channels_intra_node=131"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["step_time_s"] > base["step_time_s"]
    assert held["breakdown"]["nccl_sm"] > base["breakdown"]["nccl_sm"] > 0


def test_collective_takes_zero_as_the_topologys_own_rate(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["collective", "all-reduce", "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert main(["collective", "all-reduce", "--set", "cluster.nvlink_gbps=0", "--json"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert zero == own  # 0 = the topology's own NVLink rate, not a link of 0 (or 1) Gb/s
    assert_one_line_error(["collective", "all-reduce", "--set", "cluster.nvlink_gbps=-3"], capsys,
                          "cluster.nvlink_gbps = -3.0")


def test_search_refuses_a_negative_job_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["search", "nemo-8b-8", "--no-progress", "--jobs", "-1"], capsys, "--jobs -1", "every core")


def test_a_sweep_whose_every_layout_is_refused_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.csv"
    assert main(["sweep", "nemo-8b-8", "--grid", "parallel.tp=-1", "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simtrain: error: no valid layout") and "parallel.tp = -1" in err[0]
    assert out.exists()  # the rows and their reasons are still written


def test_calibrate_refuses_a_step_it_cannot_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.toml"
    assert_one_line_error(["calibrate", "nemo-8b-8", "--step-time", "1e-9", "--out", str(out)], capsys,
                          "--step-time 1e-09", "cannot reach it")
    assert not out.exists()


def test_calibrate_on_a_step_1e20_times_too_long_names_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    # the residual rounds to -1 there: once a math domain error, then "closest 0 s"
    assert_one_line_error(["calibrate", "nemo-8b-8", "--step-time", "1e20"], capsys, "--step-time 1e+20", "cannot reach")
    assert main(["calibrate", "nemo-8b-8", "--step-time", "1e20"]) == 2
    assert "closest 0 s" not in capsys.readouterr().err


@pytest.mark.parametrize("argv_tail", [["run", "A" * 300, "--no-progress"],
                                       ["run", "nemo-8b-8", "--no-progress", "--set", "cluster.topology=" + "a" * 300],
                                       ["run", "nemo-8b-8", "--no-progress", "--set", "model.hf_config=" + "a" * 300],
                                       ["topology", "a" * 300]])
def test_a_name_longer_than_any_file_system_allows_is_one_line(argv_tail: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(argv_tail, capsys, "aaa" if "A" * 300 not in argv_tail else "AAA")


@pytest.mark.parametrize("csv, fragments", [
    ("scenario,step_time_s\nnemo-8b-8,12.9,extra,cols\n", ("--runs line 2", "more fields than the header")),
    ("scenario,step_time_s,set\nnemo-8b-8,12.9,parallel.tp=abc\n", ("--runs line 2", "parallel.tp = 'abc'")),
    # a layout the plan refuses (8 GPUs, TP2 x DP8) is named by its line too
    ("scenario,step_time_s,set\nnemo-8b-8,12.9,parallel.tp=2;parallel.dp=8\n", ("--runs line 2", "cluster.gpus")),
    ("scenario,step_time_s\nnemo-8b-8,1e300\n", ("--runs line 2: step_time_s = 1e+300", "cannot reach")),
])
def test_calibrate_runs_errors_name_their_line(csv: str, fragments: tuple[str, ...], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text(csv)
    assert_one_line_error(["calibrate", "--runs", str(runs)], capsys, *fragments)


def test_a_stack_files_bad_default_is_refused_with_the_files_name(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "bad.toml"
    stack.write_text('name = "bad"\n[defaults.parallel]\ntp = "x"\n')
    # the scenario sets tp itself, so the default would never be read: still the file's typo
    assert_one_line_error(["run", "nemo-8b-8", "--no-progress", "--set", f'cluster.stack="{stack}"'], capsys,
                          "stack bad.toml [defaults.parallel]", "parallel.tp = 'x'")


def test_an_unwritable_timeline_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["run", "nemo-8b-8", "--no-progress", "--timeline", "/proc/simtrain-x.png"], capsys,
                          "--timeline '/proc/simtrain-x.png'")


@pytest.mark.parametrize("kind, meant", [("nvlnk", "nvlink"), ("NVLink", "nvlink"), ("nics", "nic")])
def test_an_explicit_links_kind_a_letter_off_is_refused(kind: str, meant: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # a typo would silently drop the NVLink domains and the cluster.<kind>_* what-ifs
    src = (Path(__file__).parent.parent / "topologies" / "example-explicit.toml").read_text()
    assert 'kind = "nvlink"' in src
    topo = tmp_path / "typo.toml"
    topo.write_text(src.replace('kind = "nvlink"', f'kind = "{kind}"', 1).replace('kind = "nic"', f'kind = "{kind}"', 1))
    assert_one_line_error(["topology", str(topo)], capsys, f"kind = '{kind}'", f'kind = "{meant}"')


def test_free_link_labels_stay_free(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = (Path(__file__).parent.parent / "topologies" / "example-explicit.toml").read_text()
    topo = tmp_path / "labels.toml"
    topo.write_text(src.replace('kind = "nvlink"', 'kind = "pcie"', 1))
    assert main(["topology", str(topo), "--json"]) == 0


@pytest.mark.parametrize("argv, fragment", [(["compare", "nosuch-scenario"], "no such scenario file"),
                                            (["compare", "nemo-8b-8", "--set", "parallel.tp=0"], "parallel.tp = 0"),
                                            (["compare", "nemo-8b-8"], "A and B are the same")])
def test_compare_names_what_is_wrong_with_a_before_sameness(argv: list[str], fragment: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(argv, capsys, fragment)


def test_a_megatron_flag_a_letter_off_a_modelled_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # it used to be ignored with a warning and the run went on at TP1
    assert_one_line_error(["run", "megatron-sc21-gpt-1.7b", "--no-progress", "--megatron-args",
                           "--tensor-model-paralel-size 8 --bf16"], capsys,
                          "--tensor-model-paralel-size", "did you mean --tensor-model-parallel-size?")


def test_a_script_with_two_different_training_lines_is_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    two = tmp_path / "two.sh"
    two.write_text("torchrun pretrain_gpt.py --micro-batch-size 16 --bf16\n"
                   "torchrun pretrain_gpt.py --micro-batch-size 8 --bf16\n")
    assert_one_line_error(["run", "megatron-sc21-gpt-1.7b", "--no-progress", "--megatron-script", str(two)], capsys,
                          "2 lines run pretrain_gpt.py with different flags")


def test_one_bad_device_file_of_the_users_is_listed_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "bad.toml").write_text("name = 5\n")
    monkeypatch.chdir(tmp_path)
    assert main(["list", "devices"]) == 0
    out = capsys.readouterr().out
    assert "bad" in out and "(unreadable:" in out and "H100-SXM" in out  # the others are still listed
    assert main(["list"]) == 0


def test_lists_given_a_value_twice_run_it_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedules", "--pp", "4", "-m", "4,4"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("1f1b ")]
    assert len(rows) == 1


def test_an_empty_search_space_names_the_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["search", "megatron-sc21-gpt-1.7b", "--no-progress", "--tp", "99999999999"], capsys,
                          "tp 99999999999", "over 32 GPUs")


def test_a_scenario_name_that_is_not_text_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "n.toml"
    f.write_text('name = 5\n[model]\nname = "llama3-8b"\n')
    assert_one_line_error(["run", str(f), "--no-progress"], capsys, "name = 5", "expected a string")


def test_an_empty_window_is_refused_not_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["run", "nemo-8b-8", "--no-progress", "--timeline", str(tmp_path / "t.png"), "--window", ""],
                          capsys, "--window ''", "START:END")


def test_a_grid_past_max_layouts_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.csv"
    assert_one_line_error(["sweep", "nemo-8b-8", "--grid", "parallel.micro_batch=1,2,4", "--grid",
                           "training.global_batch=8,16,32,64", "--max-layouts", "10", "--no-progress", "--out", str(out)],
                          capsys, "the grid has 12 layouts (3 x 4)", "--max-layouts 10")
    assert not out.exists()
