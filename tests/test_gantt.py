"""The Gantt chart shows where the time goes: every kind of interval is drawn (bars under a
pixel as strips as high as their share of the pixel column), with a legend, a window to
zoom into, and one collection per kind rather than one patch per interval.

Truths: the drawn area of each kind equals its recorded time (up to the strips' rounding to
1/32 of a row per pixel column), and the 405B default's exposed TP shows at its share.
"""

from __future__ import annotations

import numpy as np
import pytest

from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.plots.timeline import COLUMNS, HEIGHT, STEP, gantt_figure, gantt_layers, timeline_rows
from simtrain.scenario.config import load_scenario


def area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def drawn_seconds(lay) -> dict[str, float]:
    out = {}
    for k in lay.rects:
        rect = sum(w * h for _, w, _, h in lay.rects[k]) / HEIGHT
        out[k] = rect + sum(area(p) for p in lay.strips[k]) / HEIGHT
    return out


def recorded(res, devices, window):
    """Main-stream seconds per kind inside the window, straight from the records."""
    t0, t1 = window
    out: dict[str, float] = {}
    for r in res.records:
        if r.stream == "main" and r.device in devices:
            a, z = max(r.start, t0), min(r.end, t1)
            if z > a:
                out[r.kind] = out.get(r.kind, 0.0) + z - a
    return out


@pytest.fixture(scope="module")
def llama405():
    res = simulate(load_scenario("llama3-405b-8k"))
    devices = list(res.extra["plan"].simulated)
    return res, devices, timeline_rows(res.records, devices)


def test_sub_pixel_tp_is_drawn_at_its_share_of_the_step(llama405):
    res, devices, rows = llama405
    lay = gantt_layers(rows)
    t0, t1 = lay.window
    px = (t1 - t0) / COLUMNS
    rec = recorded(res, devices, lay.window)
    drawn = drawn_seconds(lay)
    # every TP all-reduce is narrower than a pixel: nothing as a bar, all of it as strips ...
    assert not lay.rects["tp"] and lay.strips["tp"]
    # ... whose area is the recorded TP time, up to rounding each column to 1/32 of a row
    tol = len(devices) * COLUMNS * px * STEP / 2
    assert drawn["tp"] == pytest.approx(rec["tp"], abs=tol)
    assert rec["tp"] / (len(devices) * (t1 - t0)) > 0.05  # the share the old chart hid entirely
    for kind in ("pp", "dp", "bubble"):
        assert drawn[kind] == pytest.approx(rec.get(kind, 0.0), abs=tol)
    # compute bars are the merged actions: their area is compute plus the waits drawn over them
    compute = sum(drawn[k] for k in ("F", "B"))
    assert compute == pytest.approx(rec["F"] + rec["B"] + _inside(rows), abs=tol)  # a few are sub-pixel strips
    # and the legend's compute share takes those waits out again: exactly the recorded compute
    assert lay.seconds["F"] + lay.seconds["B"] == pytest.approx(rec["F"] + rec["B"], rel=1e-9)


def _inside(rows) -> float:
    """Seconds of the non-compute bars that lie inside a merged action bar (TP all-reduces)."""
    from simtrain.plots.timeline import _inside_actions

    total = 0.0
    for bars in rows.values():
        inside = _inside_actions(bars)
        total += sum(b.width for b in bars if id(b) in inside)
    return total


def test_one_collection_per_kind_and_a_legend_of_every_kind_drawn(llama405):
    res, devices, rows = llama405
    shares = {k: v / res.step_time_s for k, v in res.breakdown.items()}
    fig = gantt_figure(rows, "405B", shares=shares)
    ax = fig.axes[0]
    assert len(ax.patches) == 0 and len(ax.collections) <= 2 * 10  # not one patch per interval
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("exposed TP comm ") for t in labels)
    tp = next(t for t in labels if t.startswith("exposed TP comm "))
    assert tp == f"exposed TP comm {100 * shares['tp']:.1f}%"  # the report's breakdown


def test_every_kind_of_interval_is_drawn(small_overrides):
    # TP, CP (all-gather form, exposed), PP (synchronous sends), DP (no overlap), recompute, optimizer
    ov = small_overrides + ["parallel.cp=2", "cluster.gpus=32", 'parallel.recompute="full"', "engine.async_p2p=false",
                            "parallel.overlap_grad_reduce=false", "parallel.zero=0"]
    res = simulate(load_scenario(None, ov))
    devices = list(res.extra["plan"].simulated)
    rows = timeline_rows(res.records, devices)
    lay = gantt_layers(rows)
    for kind in ("F", "B", "R", "opt", "tp", "cp", "pp", "dp", "bubble"):
        assert lay.rects[kind] or lay.strips[kind], kind
    fig = gantt_figure(rows, "all kinds")
    labels = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    for name in ("forward", "backward", "recompute", "optimizer", "TP", "CP", "PP", "DP", "bubble"):
        assert name in labels


def test_a_window_draws_only_that_stretch(llama405):
    res, devices, rows = llama405
    lay = gantt_layers(rows, (2.0, 3.0))
    assert lay.window == (2.0, 3.0)
    for k in lay.rects:
        for x, w, _, _ in lay.rects[k]:
            assert 2.0 <= x and x + w <= 3.0 + 1e-12
    # zoomed in, a forward or backward of one layer is wide enough to carry its label
    assert len(lay.labels) > 100
    rec = recorded(res, devices, (2.0, 3.0))
    px = 1.0 / COLUMNS
    drawn = drawn_seconds(lay)
    assert drawn["tp"] == pytest.approx(rec["tp"], abs=len(devices) * COLUMNS * px * STEP / 2)


def test_run_timeline_window_option(tmp_path, capsys, small_overrides):
    sets = sum((["--set", o] for o in small_overrides), [])
    png = tmp_path / "w.png"
    assert main(["run", *sets, "--timeline", str(png), "--window", "0.1:0.3"]) == 0
    assert png.stat().st_size > 1000
    capsys.readouterr()
    for bad in ("3:1", "x:y", "5", "100:200"):
        assert main(["run", *sets, "--timeline", str(png), "--window", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--window" in err and "e.g." in err
    assert main(["run", *sets, "--window", "0:1"]) == 2
    err = capsys.readouterr().err
    assert "--window" in err and "--timeline" in err
