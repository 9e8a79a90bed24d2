"""`simtrain schedules`: the chart shows only valid points, keeps every schedule visible, puts
its legend beside the data and plots the simulated values with --scenario; the table's
columns carry units."""

import pytest

from simtrain.cli import main
from simtrain.schedule.explore import bubble_curves, chart_lines, explore, format_table


def test_a_line_breaks_where_its_schedule_cannot_run():
    # interleaved needs M to be a multiple of pp = 16: M = 30 is invalid, so no point and
    # no segment through it (it was drawn straight from 16 to 32)
    lines = {ln.label: ln for ln in chart_lines(bubble_curves(16, 8, [16, 30, 32]))}
    # (interleaved-ep-overlap has the same order, so the same line)
    inter = next(ln for label, ln in lines.items() if label.startswith("interleaved (vp=8)"))
    assert inter.xs == (16, 30, 32) and inter.ys[1] is None and None not in (inter.ys[0], inter.ys[2])
    # uniform costs: interleaved bubble = (p-1)/(v*m + p-1) at the valid points (Narayanan et al. 2021)
    for m, y in zip(inter.xs, inter.ys):
        if y is not None:
            assert y == pytest.approx(15 / (8 * m + 15), abs=1e-9)


def test_identical_schedules_share_one_line_named_after_both():
    # gpipe and 1f1b have the same bubble with uniform costs, (p-1)/(m+p-1): one line, both names
    labels = [ln.label for ln in chart_lines(bubble_curves(4, 2, [4, 8], names=["gpipe", "1f1b", "zb-h1"]))]
    assert labels == ["gpipe (vp=1) = 1f1b (vp=1)", "zb-h1 (vp=1)"]


def test_the_legend_is_outside_the_plotting_area_and_markers_differ():
    from simtrain.plots.schedules import bubble_figure

    fig, ax = bubble_figure(bubble_curves(16, 8, [16, 30, 32]))
    fig.canvas.draw()
    leg = ax.get_legend().get_window_extent()
    assert leg.x0 >= ax.get_window_extent().x1  # entirely to the right of the axes
    markers = [ln.get_marker() for ln in ax.get_lines()]
    assert len(set(markers)) == len(markers)
    assert "uniform costs" in ax.get_title()


def test_plot_with_a_scenario_draws_the_simulated_bubble(tmp_path, capsys, monkeypatch):
    import simtrain.plots.schedules as plots

    seen = {}
    real_plot = plots.plot_bubble_vs_microbatches
    monkeypatch.setattr(plots, "plot_bubble_vs_microbatches", lambda data, path: seen.setdefault("data", data) and real_plot(data, path))
    png = tmp_path / "b.png"
    argv = ["schedules", "--pp", "4", "--vp", "2", "-m", "4,8", "--schedule", "1f1b", "--schedule", "interleaved",
            "--scenario", "llama3-405b-8k", "--set", 'model.name="llama3-8b"', "--set", "parallel.first_stage_layers=-1",
            "--set", "parallel.last_stage_layers=-1", "--set", "cluster.gpus=2048", "--plot", str(png), "--json"]
    assert main(argv) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    data = seen["data"]
    assert "simulated with llama3-405b-8k" in data.basis
    for r in rows:
        pts = dict(data.series[f"{r['schedule']} (vp={r['vp']})"])
        assert pts[r["microbatches"]] == r["simulated_bubble_fraction"]
        assert pts[r["microbatches"]] != pytest.approx(r["bubble_fraction"], abs=1e-3)  # not the uniform-cost value
    assert png.stat().st_size > 1000


def test_every_numeric_column_of_the_table_has_a_unit():
    text = format_table(explore(4, 2, [8], names=["1f1b", "interleaved"]))
    header = text.splitlines()[0]
    for col in ("bubble %", "makespan [F]", "peak [chunk acts]", "peak [mb]", "p2p [sends/step]"):
        assert col in header
    assert "units:" in text and "forward times" in text
