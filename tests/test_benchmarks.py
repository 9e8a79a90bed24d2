"""The benchmark scripts run (quick mode) so they cannot rot. No wall-clock limits here."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_engine_benchmark_quick(capsys):
    bench = _load("bench")
    assert bench.main(["--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["baseline_s"] > 0
    modes = {r["mode"] for r in out["rows"]}
    assert modes == {"symmetric", "per-rank"}
    for r in out["rows"]:
        assert r["events"] > 0 and r["wall"] > 0 and r["rss"] > 0 and 0 < r["mfu"] < 1


def test_collectives_benchmark_quick(capsys):
    bench = _load("collectives")
    assert bench.main(["--quick"]) in (0, None)
    assert "busbw" in capsys.readouterr().out


def test_sweep_benchmark_quick(capsys):
    bench = _load("sweep_bench")
    assert bench.main(["--quick"]) in (0, None)
    assert "layouts/min" in capsys.readouterr().out


def test_plots_benchmark_quick(capsys):
    bench = _load("plots_bench")
    assert bench.main(["--quick"]) == 0
    assert "Gantt PNG" in capsys.readouterr().out


def test_search_benchmark_quick(capsys):
    bench = _load("search_bench")
    assert bench.main(["--quick", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "x baseline" in out and "simulated" in out and "winner:" in out
