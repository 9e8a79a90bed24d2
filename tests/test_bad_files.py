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
    return dict(binary=binary, hf_arch=hf_arch, hf_type=hf_type, hf_bin=hf_bin, ref_scalar=ref_scalar,
                ref_noscen=ref_noscen, ref_str=ref_str, folder=folder)


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
]


@pytest.mark.parametrize("argv,message", CASES)
def test_bad_file_gives_one_line(files: dict[str, Path], argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simtrain: error:"), err
    assert message in err, err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # NaN slipped through every range check (comparisons with NaN are false) and stalled
    # the engine on a degraded link at NaN bandwidth
    assert main(["run", "--set", "engine.mode=\"per-rank\"", "--set", 'whatif.degraded_links=["0-nvsw0"]',
                 "--set", f"whatif.link_bandwidth_factor={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "whatif.link_bandwidth_factor" in err and "finite" in err, err
