"""tools/validation_table.py: the README table from `validate --json`, a source whose rows
are all fits of a catalog constant included (it has no zero-shot prediction)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_a_source_fitted_on_all_its_rows_is_listed_as_a_fit(tmp_path):
    case = lambda name, group, err, fitted="": {  # noqa: E731
        "case": name, "group": group, "fitted": fitted, "comparisons": [{"error": err}]}
    by = lambda mape, n, bias=0.0: {"mape": mape, "cases": n, "bias": bias}  # noqa: E731
    report = {
        "cases": [case("a1", "A", 0.10), case("a2", "A", -0.20), case("f1", "F", 0.02, "stacks/x.toml"),
                  case("f2", "F", -0.04, "stacks/x.toml")],
        "modes": {"zero-shot": {"by_source": {"A": by(15.0, 2, -5.0)}},
                  "loso": {"by_source": {"A": by(12.0, 2), "F": by(4.0, 2)}}},
    }
    path = tmp_path / "v.json"
    path.write_text(json.dumps(report))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "validation_table.py"), str(path)],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| source")]
    assert rows[0] == "| A | 2 | 15.0% (-5.0%) | – | 12.0% (2) |"
    assert rows[1] == "| F | 2 | fit: all 2 rows (3.0% residual) | – | 4.0% (2) |"  # (2% + 4%) / 2
    assert "zero-shot 15.0% over 2 rows, 15.0% mean of 1 sources" in out  # fits stay out of the summary


def test_the_calibration_row_estimate_rescales_the_other_rows_by_hand(tmp_path):
    # Source A: step errors +10% and -10%. Calibrated on the first, the second reads
    # 0.9 / 1.1 - 1 = -18.18%; on the second, the first reads 1.1 / 0.9 - 1 = +22.22%: mean
    # 20.20%, best 18.18%. Source B: one row, no estimate. TFLOP/s rows count as step errors:
    # +25% TFLOP/s is a step 1 / 1.25 - 1 = -20% off.
    case = lambda name, group, err, metric="step_time_s", basis="step": {  # noqa: E731
        "case": name, "group": group, "fitted": "", "status": "ok", "basis": basis,
        "comparisons": [{"metric": metric, "error": err}]}
    report = {"cases": [case("a1", "A", 0.10), case("a2", "A", -0.10), case("b1", "B", 0.05),
                        case("c1", "C", 0.25, "tflops_per_gpu", "tflops"), case("c2", "C", -0.20)]}
    sys.path.insert(0, str(ROOT / "tools"))
    from validation_table import any_row_calibration

    est = any_row_calibration(report)
    assert set(est) == {"A", "C"}
    mean, best = est["A"]
    assert mean == pytest.approx((100 * (1 - 0.9 / 1.1) + 100 * (1.1 / 0.9 - 1)) / 2, rel=1e-9)
    assert best == pytest.approx(100 * (1 - 0.9 / 1.1), rel=1e-9)
    assert est["C"] == (pytest.approx(0.0, abs=1e-9), pytest.approx(0.0, abs=1e-9))  # both rows 20% fast
