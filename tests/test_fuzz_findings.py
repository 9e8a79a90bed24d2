"""Cases found by fuzzing the CLI with 287 kinds of bad input (issue 15): each used to give a
traceback, hang, be silently accepted or print more than one line. Every one now exits 2
with one line naming the field, the value and the fix."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from simtrain.cli import main

ROOT = Path(__file__).resolve().parent.parent


def one_line(argv: list[str], capsys, *fragments: str) -> str:
    assert main(argv) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simtrain: error:"), err
    assert "Traceback" not in err and "usage:" not in err
    for f in fragments:
        assert f in err, err
    return err


SMALL = ["--set", 'model.name="llama3-8b"', "--set", "cluster.gpus=8", "--set", "parallel.tp=8", "--set", "parallel.pp=1",
         "--set", "parallel.dp=1", "--set", "parallel.vp=1", "--set", "training.global_batch=8",
         "--set", "parallel.first_stage_layers=-1", "--set", "parallel.last_stage_layers=-1", "--set", 'schedule.name="1f1b"']


# ---- tracebacks and hangs -----------------------------------------------------------------

@pytest.mark.parametrize("argv,fragments", [
    (["collective", "all-reduce", "--size", "1e400"], ["--size = '1e400'", "limit"]),  # was OverflowError
    (["schedules", "--pp", "4096", "-m", "65536"], ["pairs", "fewer"]),  # was MemoryError after 56 s
    (["schedules", "--pp", "4", "-m", "10000000"], ["-m 10000000", "65,536"]),  # was a hang
    (["schedules", "--pp", "10000000", "-m", "1"], ["--pp 10000000", "10,000"]),  # was a hang
])
def test_sizes_that_crashed_or_hung_are_refused_at_once(argv, fragments, capsys):
    one_line(argv, capsys, *fragments)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hf_config_naming_a_fifo_is_refused_instead_of_blocking(tmp_path, capsys):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    one_line(["run", *SMALL, "--set", f'model.hf_config="{fifo}"'], capsys, "not a regular file")


# ---- silently accepted ----------------------------------------------------------------------

def _explicit_with(tmp_path, second: str) -> Path:
    text = (ROOT / "topologies" / "example-explicit.toml").read_text()
    p = tmp_path / "dup.toml"
    p.write_text(text + "\n[[links]]\n" + second)
    return p


@pytest.mark.parametrize("second", [
    'a = "n0g0"\nb = "sw0"\nbandwidth_gbps = 3600\nlatency_us = 1.0\nkind = "nvlink"\n',  # identical: was dropped
    'a = "sw0"\nb = "n0g0"\nbandwidth_gbps = 100\nlatency_us = 5.0\nkind = "pcie"\n',  # different: replaced the first
])
def test_explicit_topology_listing_a_cable_twice_is_refused(tmp_path, capsys, second):
    p = _explicit_with(tmp_path, second)
    one_line(["topology", str(p), "--gpus", "4"], capsys, "already given by links[0]", "list each cable once")


def test_explicit_topology_with_two_one_way_links_is_still_one_duplex_cable(tmp_path, capsys):
    text = (ROOT / "topologies" / "example-explicit.toml").read_text()
    # the first cable as two one-directional links: legitimate
    text = text.replace('b = "sw0"\nbandwidth_gbps = 3600\nlatency_us = 1.0\nkind = "nvlink"\n',
                        'b = "sw0"\nbandwidth_gbps = 3600\nlatency_us = 1.0\nkind = "nvlink"\nduplex = false\n', 1)
    text += '\n[[links]]\na = "sw0"\nb = "n0g0"\nbandwidth_gbps = 3600\nlatency_us = 1.0\nkind = "nvlink"\nduplex = false\n'
    p = tmp_path / "oneway.toml"
    p.write_text(text)
    assert main(["topology", str(p), "--gpus", "4"]) == 0


def test_schedule_file_giving_a_rank_twice_is_refused(tmp_path, capsys):
    f = tmp_path / "s.txt"
    f.write_text("0: 0F0 0B0\n# the same rank again\n0: 0F0 0B0\n")
    one_line(["run", *SMALL, "--set", "training.global_batch=1", "--set", f'schedule.file="{f}"'], capsys,
             "rank 0 is listed a second time", "line 1")


def test_hf_num_key_value_heads_zero_is_refused(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32, "hidden_size": 4096,
                               "intermediate_size": 11008, "num_attention_heads": 32, "vocab_size": 32000,
                               "num_key_value_heads": 0}))
    one_line(["run", *SMALL, "--set", f'model.hf_config="{cfg}"'], capsys, "num_key_value_heads = 0")


def test_first_stage_layers_with_a_single_stage_is_refused(capsys):
    one_line(["run", *SMALL, "--set", "parallel.first_stage_layers=3"], capsys, "parallel.first_stage_layers = 3",
             "single pipeline stage")


def test_schedules_n_zero_is_refused(capsys):
    one_line(["schedules", "--schedule", "llama3", "--n", "0"], capsys, "--n 0", "omit it")


@pytest.mark.parametrize("op,algo", [("all-to-all", "tree"), ("all-to-all", "hierarchical"),
                                     ("broadcast", "tree"), ("broadcast", "hierarchical")])
def test_collective_algorithm_that_would_run_as_ring_is_refused(op, algo, capsys):
    one_line(["collective", op, "--gpus", "16", "--algo", algo], capsys, f"--algo = '{algo}'", "run as ring")


@pytest.mark.parametrize("args,fragment", [
    (["--size", "0.3"], "0.3 bytes"), (["--size", "0"], "0 bytes"), (["--size", "1e30"], "limit"),
    (["--sizes", "1:1e300"], "limit"),
])
def test_collective_sizes_that_are_not_bytes_or_too_large_are_refused(args, fragment, capsys):
    one_line(["collective", "all-reduce", *args], capsys, fragment)


def test_collective_sizes_still_take_fractions_of_units_that_are_whole_bytes(capsys):
    assert main(["collective", "all-reduce", "--size", "1.5K", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["size_bytes"] == 1536


@pytest.mark.parametrize("override,fragment", [
    ("stack.sustained_fraction=1e-300", "stack.sustained_fraction = 1e-300"),
    ("training.seq_len=1000000000000000000", "training.seq_len"),
    ("model.hidden_size=1099511627776", "model.hidden_size"),
])
def test_absurd_values_are_refused_instead_of_simulated(override, fragment, capsys):
    one_line(["run", "--set", override], capsys, fragment, "limit" if "fraction" not in override else "below 0.05")


# ---- more than one line ---------------------------------------------------------------------

@pytest.mark.parametrize("argv,fragments", [
    (["frobnicate"], ["invalid choice: 'frobnicate'", "simtrain --help"]),
    (["run", "--jsn"], ["--jsn", "did you mean --json?"]),
    (["collective", "allreduce"], ["'allreduce'", "did you mean 'all-reduce'?"]),
    (["collective", "all-reduce", "--gpus", "eight"], ["--gpus", "'eight'", "whole number"]),
    (["collective", "all-reduce", "--size", "-1G"], ["--size", "--size=VALUE"]),
    (["schedules", "-m", "0"], ["'0'", "positive whole numbers"]),
    (["schedules", "-m", "8:4"], ["'8:4'", "FIRST <= LAST"]),
])
def test_usage_errors_are_one_line_with_the_fix(argv, fragments, capsys):
    one_line(argv, capsys, *fragments)


def test_compare_refuses_a_bad_b_before_simulating_anything(capsys, monkeypatch):
    import simtrain.analysis.run as run_mod

    def boom(*a, **k):
        raise AssertionError("simulated before checking B")

    monkeypatch.setattr(run_mod, "simulate_plan", boom)
    monkeypatch.setattr(run_mod, "simulate", boom)
    one_line(["compare", "llama3-405b-8k", "--b-set", "parallel.tp=3"], capsys, "parallel.tp = 3")


def test_schedules_scenario_error_is_one_line_without_progress_text(capsys):
    # M = 8 with the scenario's DP and micro-batch gives a batch the scenario's GPUs cannot hold at PP4
    one_line(["schedules", "--pp", "4", "--vp", "2", "-m", "8", "--scenario", "llama3-405b-8k",
              "--set", 'model.name="llama3-8b"', "--set", "parallel.first_stage_layers=-1",
              "--set", "parallel.last_stage_layers=-1", "--set", "cluster.gpus=512"], capsys, "cluster.gpus = 512")


def test_sweep_and_search_top_errors_say_the_fix(capsys):
    one_line(["sweep", "--top", "-1", "--grid", "parallel.tp=1"], capsys, "--top -1", "e.g. --top 10")
    one_line(["search", "--top", "-2"], capsys, "--top -2", "e.g. --top 5")


def test_sweep_where_every_point_is_refused_says_so(tmp_path, capsys):
    # the report and the CSV still come out; the exit status says nothing was valid
    assert main(["sweep", "--grid", "parallel.dp=2000000", "--out", str(tmp_path / "s.csv"), "--no-progress"]) == 1
    cap = capsys.readouterr()
    out = cap.out
    assert "fits in memory" not in out.splitlines()[1]
    assert "no valid layout: all 1 were refused" in out and "1,048,576" in out
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simtrain: error: no valid layout: all 1 were refused")


def test_per_rank_mode_refuses_a_hundred_thousand_devices(capsys):
    one_line(["run", "--set", 'engine.mode="per-rank"', "--set", "cluster.gpus=100352", "--set", "parallel.dp=784",
              "--set", "training.global_batch=25088"], capsys, "engine.mode = 'per-rank'", "65,536", "symmetric")
