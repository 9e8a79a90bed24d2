"""Bad files and paths get one line and exit 2: cases found by fuzzing the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtrain.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    hf_arch = tmp_path / "arch.json"
    hf_arch.write_text(json.dumps({"architectures": 5, "num_hidden_layers": 2}))
    hf_type = tmp_path / "type.json"
    hf_type.write_text(json.dumps({"model_type": ["llama"]}))
    hf_bin = tmp_path / "bin.json"
    hf_bin.write_bytes(b"\xff\xfe")
    ref_scalar = tmp_path / "ref_scalar.toml"
    ref_scalar.write_text("[cases]\nfoo = 5\n")
    ref_noscen = tmp_path / "ref_noscen.toml"
    ref_noscen.write_text('[cases.a]\ngroup = "g"\n')
    ref_str = tmp_path / "ref_str.toml"
    ref_str.write_text('[cases.a]\nscenario = "llama3-405b-8k"\nmfu = "x"\n')
    folder = tmp_path / "out.png"
    folder.mkdir()
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    plain = tmp_path / "plain"  # a file where an output's folder would go
    plain.write_text("x")
    return dict(binary=binary, hf_arch=hf_arch, hf_type=hf_type, hf_bin=hf_bin, ref_scalar=ref_scalar,
                ref_noscen=ref_noscen, ref_str=ref_str, folder=folder, empty=empty, plain=plain)


def assert_one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    """Exit 2 and exactly one stderr line, the standard error line, containing every fragment."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simtrain: error:"), err
    for f in fragments:
        assert f in err, err


CASES = [
    (["run", "{binary}"], "not UTF-8 text"),
    (["run", "--set", 'cluster.topology=""'], "cluster.topology = '': is empty"),
    (["topology", "{binary}"], "not UTF-8 text"),
    (["collective", "all-reduce", "--topology", ""], "is empty"),
    (["run", "--set", "schedule.file={binary}"], "schedule.file"),
    (["run", "--set", "model.hf_config={hf_arch}"], "architectures = 5 is not a list"),
    (["run", "--set", "model.hf_config={hf_type}"], "model_type = ['llama'] is not a string"),
    (["run", "--set", "model.hf_config={hf_bin}"], "not UTF-8 text"),
    (["validate", "--quiet", "--reference", "{ref_scalar}"], "cases.foo = 5: is not a table"),
    (["validate", "--quiet", "--reference", "{ref_noscen}"], "missing key scenario"),
    (["validate", "--quiet", "--reference", "{ref_str}"], "cases.a.mfu = 'x': must be a positive number"),
    (["validate", "--quiet", "--reference", "{binary}"], "not UTF-8 text"),
    (["schedules", "--plot", "{folder}"], "cannot write it"),
    # an empty stack file used to run the default stack under the file's name
    (["run", "--set", "cluster.stack={empty}"], "is empty"),
    # --megatron-args "$FLAGS" with FLAGS unset used to run the scenario unchanged
    (["run", "--megatron-args", ""], "--megatron-args '': no flags given"),
    (["search", "--out", "{plain}/sub/x.csv"], "cannot make its folder"),
]


@pytest.mark.parametrize("argv,message", CASES)
def test_bad_file_gives_one_line(files: dict[str, Path], argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error([a.format(**{k: str(v) for k, v in files.items()}) for a in argv], capsys, message)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # NaN slipped through every range check (comparisons with NaN are false) and stalled
    # the engine on a degraded link at NaN bandwidth
    assert_one_line_error(["run", "--set", "engine.mode=\"per-rank\"", "--set", 'whatif.degraded_links=["0-nvsw0"]',
                           "--set", f"whatif.link_bandwidth_factor={value}"], capsys, "whatif.link_bandwidth_factor", "finite")


@pytest.fixture
def more(tmp_path: Path) -> dict[str, Path]:
    hf = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
          "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 100}
    tie = tmp_path / "tie.json"
    tie.write_text(json.dumps({**hf, "tie_word_embeddings": "false"}))
    moe = tmp_path / "moe.json"
    moe.write_text(json.dumps({**hf, "num_local_experts": "8"}))
    eff = tmp_path / "eff.toml"
    eff.write_text('name = "x"\n[nvlink]\nefficiency = 2\n')
    lat = tmp_path / "lat.toml"
    lat.write_text('name = "x"\n[nic]\nlatency_us = -1\n')
    ref = tmp_path / "ref.toml"
    ref.write_text('[[case]]\nscenario = "llama3-405b-8k"\n')
    return dict(tie=tie, moe=moe, eff=eff, lat=lat, ref=ref)


MORE = [
    # silently wrong before: accepted and simulated
    (["run", "--set", "model.head_dim=-1"], "model.head_dim = -1: must not be negative"),
    (["run", "--set", "model.num_key_value_heads=-8"], "must not be negative"),
    (["run", "--set", "model.hf_config={tie}"], "tie_word_embeddings = 'false' is not true or false"),
    (["run", "--set", "model.hf_config={moe}"], "num_local_experts = '8' is not a whole number"),
    (["topology", "{eff}"], "nvlink.efficiency = 2.0: must be in (0, 1]"),
    (["topology", "{lat}"], "nic.latency_us = -1.0: must be zero or positive"),
    (["run", "--set", "whatif.random_slow_fraction=-0.5"], "whatif.random_slow_fraction"),
    (["run", "--set", "whatif.compute_jitter=-1"], "whatif.compute_jitter"),
    (["run", "--set", "whatif.slow_devices=[99999]"], "not a rank of this 8192-device layout"),
    (["run", "--set", "parallel.first_stage_layers=-5"], "must be -1 (even split) or a layer count"),
    (["validate", "--reference", "{ref}"], "case = "),
    (["validate", "--max-error", "nan"], "--max-error nan"),
    (["sweep", "--out", "a.xlsx"], "end the name with .csv"),
    (["sweep", "--grid", "parallel.tp=4,8", "--parquet", "x.txt"], "end the name with .parquet"),
    (["search", "--out", "s.json"], "end the name with .csv"),
    (["run", "--timeline", ""], "--timeline '': empty path"),
    (["run", "--trace", ""], "--trace '': empty path"),
    (["run", ""], "scenario = '': is empty"),
    (["search", "--tp", ""], "--tp '': '' is not a positive whole number"),
    (["search", "--schedules", ""], "unknown schedule ''"),
    (["collective", "send-recv", "--algo", "tree", "--gpus", "8"], "does not apply to send-recv"),
    # misleading before
    (["run", "--set", "training.global_batch=-128"], "training.global_batch = -128: must be positive"),
    (["run", "--set", "cluster.gpus=-8"], "cluster.gpus = -8: must be positive"),
    # hung before: sizes far past any real job
    (["run", "--set", "cluster.gpus=100000000"], "limit of 1,048,576 devices"),
    (["topology", "dgx-h100", "--gpus", "100000000"], "limit of 1,048,576 devices"),
    (["run", "--set", "training.global_batch=1000000000"], "limit of 65,536"),
    (["run", "--set", "model.num_hidden_layers=100000"], "limit of 10,000"),
]


@pytest.mark.parametrize("argv,message", MORE)
def test_bad_input_gives_one_line(more: dict[str, Path], argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error([a.format(**{k: str(v) for k, v in more.items()}) for a in argv], capsys, message)


@pytest.mark.parametrize("argv,message", [
    (["sweep", "--grid", "parallel.tp=4,8", "--plot-axes", "parallel.tp"], "--plot-axes 'parallel.tp': has no effect without --plot"),
    (["sweep", "--grid", "parallel.tp=4,8", "--address", "auto"], "has no effect without --executor ray"),
    (["search", "--address", "auto"], "has no effect without --executor ray"),
    (["schedules", "--set", "parallel.tp=2"], "has no effect without --scenario"),
    (["topology", "example-explicit", "--gpus", "8"], "has only 4 devices"),  # printed the 4-device file
])
def test_options_without_their_partner_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(argv, capsys, message)


def test_every_output_option_makes_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --timeline and --trace made a missing folder while search's --out refused it; now all do
    # (a small space: the folder is the point, not the search, whose default space takes minutes)
    out = tmp_path / "new" / "deeper" / "rows.csv"
    assert main(["search", "--out", str(out), "--tp", "8", "--pp", "16", "--cp", "1", "--vp", "1,8",
                 "--micro-batch", "1", "--recompute", "none", "--sp", "true", "--schedules", "1f1b,interleaved",
                 "--jobs", "1", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert "status" in out.read_text().splitlines()[0].split(",")
