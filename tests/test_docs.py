"""docs/api.md runs: its Python cells, in order, in one namespace (as a notebook would)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def cells() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_api_walkthrough_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pandas", reason="docs/api.md shows to_dataframe (pandas is in the [test] extra)")
    monkeypatch.chdir(tmp_path)
    found = cells()
    assert len(found) >= 8
    ns: dict = {}
    for i, code in enumerate(found):
        exec(compile(code, f"docs/api.md cell {i + 1}", "exec"), ns)
    out = capsys.readouterr().out
    assert "s per step, MFU" in out and "winner: TP" in out and "simtrain compare" in out
    assert (tmp_path / "step.png").stat().st_size > 1000 and (tmp_path / "step.json").stat().st_size > 100
    # the cells' claims hold: the attribution adds up, the GPT-style model has Megatron's defaults
    cmp = ns["cmp"]
    assert sum(cmp.to_dict()["attribution"].values()) == pytest.approx(cmp.mfu_difference, abs=1e-9)
    gpt = ns["gpt"]
    assert (gpt.model.intermediate_size, gpt.model.vocab_size) == (4 * 2048, 50432)  # 4h; 50,257 -> 197 x 256


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pandas", reason="the README shows to_dataframe (pandas is in the [test] extra)")
    readme = (DOC.parent.parent / "README.md").read_text()
    section = readme[readme.index("## Python API"):readme.index("## Validation and calibration")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md, Python API", "exec"), ns)
    assert ns["d"]["step_time_s"] == ns["r"].step_time_s and len(ns["df"]) == 6
    assert (tmp_path / "step.png").exists() and (tmp_path / "step.json").exists()
    assert ns["gpt"].num_gpus == 8
