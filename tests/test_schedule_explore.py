"""explore rows, the text table, the plot data and the Agg plot."""

from __future__ import annotations

import subprocess
import sys

import pytest

import simtrain.schedule as S
from simtrain.schedule.explore import analyse, bubble_curves, explore, format_table, p2p_transfers


def test_rows_cover_every_schedule_and_m() -> None:
    rows = explore(4, 2, [8, 10])
    assert [(r.schedule, r.microbatches) for r in rows] == [(n, m) for n in S.names() for m in (8, 10)]
    by = {(r.schedule, r.microbatches): r for r in rows}
    bad = by[("interleaved", 10)]
    assert not bad.valid and bad.reason == S.check("interleaved", 4, 2, 10) and bad.bubble is None
    assert by[("1f1b", 10)].vp == 1  # single-chunk schedules are compared at vp = 1
    assert by[("1f1b", 8)].bubble == pytest.approx(3 / 11)  # (p-1)/(m+p-1)
    assert by[("interleaved", 8)].bubble == pytest.approx(3 / 19)  # (p-1)/(v*m+p-1)
    assert by[("llama3", 10)].params == {"n": 5}
    assert by[("zb-h1", 8)].peak_in_flight == (4, 4, 4, 4)
    assert by[("1f1b", 8)].peak_in_flight == (4, 3, 2, 1)
    assert by[("interleaved", 8)].peak_microbatches == pytest.approx(4 + 3 / 2)


@pytest.mark.parametrize("name,vp", [("gpipe", 1), ("1f1b", 1), ("zb-h1", 1), ("interleaved", 2), ("bfs", 3), ("llama3", 2)])
@pytest.mark.parametrize("p", [1, 2, 4])
def test_p2p_sends_count_every_stage_boundary_twice(name: str, vp: int, p: int) -> None:
    m = 2 * p
    row = analyse(name, p, vp, m)
    # one activation and one gradient per stage boundary per micro-batch, all cross-rank
    # when pp > 1 (looped placement puts neighbouring stages on neighbouring ranks)
    assert row.p2p_sends == (0 if p == 1 else 2 * (p * vp - 1) * m)
    assert p2p_transfers(S.build(name, p, vp, m)) == row.p2p_sends


def test_table_is_aligned_and_explains_invalid_rows() -> None:
    text = format_table(explore(16, 2, [30, 32], names=["1f1b", "interleaved", "llama3"]))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["schedule", "pp", "vp", "M"]
    col = lines[0].index("bubble")
    assert all(len(line) >= col for line in lines[1:])
    bad = next(line for line in lines if line.startswith("interleaved") and " 30 " in line)
    assert bad.endswith('use 16 or 32, or schedule "llama3"')
    assert any(line.startswith("llama3") and "n=30" in line for line in lines)


def test_bubble_curves_skip_invalid_points() -> None:
    data = bubble_curves(4, 2, range(1, 13), names=["interleaved", "1f1b"])
    assert [m for m, _ in data.series["interleaved (vp=2)"]] == [4, 8, 12]
    assert len(data.series["1f1b (vp=1)"]) == 12
    for m, b in data.series["1f1b (vp=1)"]:
        assert b == pytest.approx(3 / (m + 3))


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_writes_file(tmp_path, suffix: str) -> None:
    from simtrain.plots.schedules import plot_bubble_vs_microbatches

    out = plot_bubble_vs_microbatches(bubble_curves(4, 2, range(1, 9)), tmp_path / f"b{suffix}")
    assert out.exists() and out.stat().st_size > 1000


def test_schedule_package_never_imports_matplotlib_or_simpy() -> None:
    code = (
        "import sys, simtrain.schedule, simtrain.schedule.explore;"
        "assert 'matplotlib' not in sys.modules and 'simpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
