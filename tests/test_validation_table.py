"""tools/validation_table.py: the README table from `validate --json`, a source whose rows
are all fits of a catalog constant included (it has no zero-shot prediction)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
