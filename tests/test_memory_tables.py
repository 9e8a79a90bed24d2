"""Memory wherever layouts are compared: `schedules --scenario`, `sweep`, `search` and
`compare` show peak memory per GPU and whether it fits; `run` says which llama3 n it used."""

import json
import re

import pytest

from simtrain.cli import main
from simtrain.schedule.explore import analyse
from tests.sweep_cases import TINY, WIDE, scenario_file


def test_schedules_scenario_shows_memory_and_n(capsys):
    """Llama 3 405B, PP16 VP8: at M = 30 the llama3 schedule's default n is 30 (no n in
    16..29 leaves a last group of 0 or >= 16 micro-batches), so every micro-batch is in flight
    on rank 0 and the layout needs far more memory than at M = 16 (n = 16)."""
    assert main(["schedules", "--pp", "16", "--vp", "8", "-m", "16,30", "--schedule", "llama3",
                 "--scenario", "llama3-405b-8k", "--json"]) == 0
    rows = {r["microbatches"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[30]["schedule_params"] == {"n": 30} and rows[16]["schedule_params"] == {"n": 16}
    # in-flight activations: M = 30 holds 30 micro-batches' worth, M = 16 holds 16 + 15/8
    assert analyse("llama3", 16, 8, 30, n=30).peak_microbatches > 1.5 * analyse("llama3", 16, 8, 16, n=16).peak_microbatches
    assert rows[30]["peak_memory_gib"] > rows[30]["capacity_gib"] and not rows[30]["fits_in_memory"]
    assert rows[16]["peak_memory_gib"] < rows[16]["capacity_gib"] and rows[16]["fits_in_memory"]
    assert rows[30]["simulated_mfu"] > rows[16]["simulated_mfu"]  # the better MFU is the one that does not fit
    assert main(["schedules", "--pp", "16", "--vp", "8", "-m", "16,30", "--schedule", "llama3",
                 "--scenario", "llama3-405b-8k"]) == 0
    text = capsys.readouterr().out
    assert "M=30   n=30" in text and "of 79.6 GiB: does NOT fit" in text
    assert "best that fits in memory: llama3 M=16" in text and "llama3 M=30 reaches" in text


def test_run_names_the_llama3_n(capsys):
    assert main(["run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule_params"] == {"n": 16}  # PP = 16 divides M = 32
    assert main(["run"]) == 0
    assert "schedule  llama3, n = 16 (symmetric engine: 16 classes of devices simulated)" in capsys.readouterr().out


def test_sweep_table_shows_memory_fit_and_the_layouts_that_do_not_fit(tmp_path, capsys):
    src = scenario_file(tmp_path, WIDE, "wide")
    assert main(["sweep", src, "--set", "parallel.pp=1", "--grid", "parallel.tp=1,4", "--out", str(tmp_path / "s.csv"),
                 "--jobs", "1", "--no-progress", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["memory_capacity_gib"] == 80.0 for r in rows)  # dgx-a100: A100 80GB, 80 GiB
    assert main(["sweep", src, "--set", "parallel.pp=1", "--grid", "parallel.tp=1,4", "--out", str(tmp_path / "s.csv"),
                 "--jobs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert head.split()[-2:] == ["GiB", "fits"]
    fits = [r for r in rows if r["fits_in_memory"]]
    assert [r["tp"] for r in fits] == [4]  # TP1 holds the 4 wide layers whole: 101.2 GiB
    assert all(f"{r['peak_memory_gib']:.1f} of 80.0" in text for r in fits)
    assert "with a higher MFU do" not in text  # TP1, which does not fit, is also the slower
    # recompute none vs full at micro-batch 16 with a 47 GiB workspace: none (faster) needs
    # about 82.6 GiB, full about 78: the table shows full, and a line says the faster one does not fit
    assert main(["sweep", src, "--set", "parallel.pp=1", "--set", "parallel.tp=4", "--set", "training.global_batch=64",
                 "--set", "parallel.micro_batch=16", "--set", "stack.workspace_gib=47", "--grid",
                 "parallel.recompute=none,full", "--out", str(tmp_path / "s.csv"), "--jobs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "1 simulated layout with a higher MFU does not fit in memory" in text
    assert re.search(r"\n1 +full .* of 80\.0 +yes", text)


def test_search_table_shows_memory_and_fit(tmp_path, capsys):
    src = scenario_file(tmp_path, TINY, "tiny")
    assert main(["search", src, "--tp", "1,2", "--pp", "1", "--cp", "1", "--vp", "1", "--micro-batch", "1,2",
                 "--recompute", "none", "--sp", "false", "--jobs", "1", "--no-progress", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "peak GiB  fits" in text and re.search(r" of 80\.0 +yes", text)


def test_compare_says_whether_each_side_fits(capsys):
    # norms that keep their inputs (not the llama3-meta stack's memory-efficient ones), 16 or 8 nodes
    argv = ["compare", "llama3-405b-8k", "--set", 'stack.norm_saves="input"']
    assert main(argv + ["--b-set", "cluster.gpus=16384", "--b-set", "parallel.dp=128"]) == 0
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if line.strip().startswith("fits in memory"))
    # A holds 32 micro-batches per replica (n = 16), B 16: only B fits the estimate (82.6 / 75.4 GiB)
    assert "no (still simulated)" in line and line.rstrip().endswith("yes")
    assert "peak memory per GPU" in text and "of 79.6 GiB" in text
