"""MFU attribution of `simtrain compare`: exact on a hand-made case, sums to the MFU
difference on simulated steps, antisymmetric, and the command's interface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtrain.analysis.compare import CAUSES, Side, attribute, compare_results
from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.scenario.config import scenario_from_dict

ZERO = {p: 0.0 for p in ("compute", "recompute", "optimizer", "tp", "cp", "pp", "dp", "bubble")}


def side(mfu: float, **parts: float) -> Side:
    bd = {**ZERO, **parts}
    return Side("x", mfu, sum(bd.values()), bd)


def test_hand_made_bubble_only() -> None:
    # W = 1 s of ideal work. A: compute 2 s (eta = 1/2), bubble 1 s, DP 1 s -> T = 4, MFU 1/4.
    # B: the bubble is gone -> T = 3, MFU 1/3. All of the +1/12 is the bubble.
    a = side(0.25, compute=2, bubble=1, dp=1)
    b = side(1 / 3, compute=2, dp=1)
    att = attribute(a, b)
    assert att["bubble"] == pytest.approx(1 / 12, abs=1e-15)
    assert all(abs(v) < 1e-15 for k, v in att.items() if k != "bubble")


def test_hand_made_two_causes_split_exactly() -> None:
    # B also computes twice as fast (eta 1/2 -> 1): T = 2, MFU 1/2, difference +1/4.
    # -MFU_A*MFU_B = -1/8; d(1/eta) = 1 - 2 = -1 -> +1/8; d(x_bubble) = 0 - 1 -> +1/8.
    a = side(0.25, compute=2, bubble=1, dp=1)
    b = side(0.5, compute=1, dp=1)
    att = attribute(a, b)
    assert att["compute_efficiency"] == pytest.approx(0.125, abs=1e-15)
    assert att["bubble"] == pytest.approx(0.125, abs=1e-15)
    assert sum(att.values()) == pytest.approx(0.25, abs=1e-15)
    assert b.compute_efficiency == 1.0 and a.compute_efficiency == 0.5


def test_antisymmetric() -> None:
    a = side(0.25, compute=2, bubble=1, dp=1)
    b = side(0.4, compute=2, tp=0.5)
    ab, ba = attribute(a, b), attribute(b, a)
    for k in ab:
        assert ab[k] == pytest.approx(-ba[k], abs=1e-15)


def _tiny(**parallel: object) -> object:
    return scenario_from_dict({
        "name": "tiny",
        "model": {"name": "gpt-1.7b"},
        "cluster": {"topology": "dgx-a100"},
        "parallel": {"tp": 2, "pp": 2, "dp": 2, **parallel},
        "training": {"seq_len": 2048, "global_batch": 8},
    }, name="tiny")


def test_simulated_attribution_sums_to_mfu_difference() -> None:
    ra = simulate(_tiny())
    rb = simulate(_tiny(recompute="full", dp=4))
    cmp = compare_results("a", ra, "b", rb)
    att = cmp.attribution
    assert set(CAUSES) <= set(att)
    assert sum(att.values()) == pytest.approx(rb.mfu - ra.mfu, abs=1e-9)
    assert abs(att["unattributed"]) < 1e-9  # the breakdown sums to the step time
    assert att["recompute"] < 0  # full recomputation costs MFU
    j = cmp.to_json()
    assert j["mfu_difference"] == pytest.approx(rb.mfu - ra.mfu)
    assert "MFU difference B - A" in cmp.text()


def test_cli_compare_variant_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text('[model]\nname = "gpt-1.7b"\n[cluster]\ntopology = "dgx-a100"\n'
                 '[parallel]\ntp = 2\npp = 2\ndp = 2\n[training]\nseq_len = 2048\nglobal_batch = 8\n')
    assert main(["compare", str(f), "--b-set", "parallel.dp=4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["b"]["layout"]["dp"] == 4 and out["a"]["layout"]["dp"] == 2
    assert sum(out["attribution"].values()) == pytest.approx(out["mfu_difference"], abs=1e-9)
    assert main(["compare", str(f)]) == 2
    assert "A and B are the same" in capsys.readouterr().err
