"""Two runs of one scenario print the same bytes with --json: users diff these files.
Wall-clock figures differ from run to run, so they go to stderr."""

import json

from simtrain.cli import main


def _out(capsys, *argv):
    assert main(list(argv)) == 0
    return capsys.readouterr()


def test_run_json_is_byte_identical_between_runs_and_timing_goes_to_stderr(capsys, small_overrides):
    args = ["run", *sum((["--set", o] for o in small_overrides), []), "--json", "--no-progress"]
    first, second = _out(capsys, *args), _out(capsys, *args)
    assert first.out == second.out
    data = json.loads(first.out)
    assert "wall_time_s" not in data and "engine_run_s" not in data
    assert data["events"] > 0  # deterministic counters stay
    assert "wall time" in first.err and len(first.err.strip().splitlines()) == 1


def test_validate_json_is_byte_identical_between_runs(capsys):
    args = ["validate", "--only", "megatron-sc21-gpt-1.7b", "--json", "--quiet"]
    first, second = _out(capsys, *args), _out(capsys, *args)
    assert first.out == second.out
    assert all("wall_s" not in c for c in json.loads(first.out)["cases"])
