"""Rank placement: parallel.order (Megatron's axis order, innermost first) and the warning
when a TP or CP group spans more than one NVLink domain."""

import itertools
import json

import pytest

from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.engine.placement import straddling
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.layout import Coord, Layout, parse_order
from tests.test_bad_files import assert_one_line_error

GB200_TP16 = ["parallel.tp=16", "parallel.pp=8", "parallel.dp=0", "parallel.vp=1", "parallel.first_stage_layers=-1",
              "parallel.last_stage_layers=-1", "model.num_hidden_layers=128", 'schedule.name="1f1b"']


@pytest.mark.parametrize("order", ["tp-cp-pp-dp", "tp-cp-dp-pp", "dp-tp-cp-pp", "pp-dp-cp-tp"])
def test_rank_is_the_mixed_radix_number_of_the_order(order):
    """rank = sum of coordinate x product of the sizes of the axes inside it, and every rank
    is hit once (a bijection)."""
    sizes = {"tp": 2, "cp": 3, "pp": 2, "dp": 5}
    L = Layout(sizes["tp"], sizes["cp"], sizes["pp"], sizes["dp"], 1, 1, 5, parse_order(order))
    dims = order.split("-")
    seen = set()
    for vals in itertools.product(*(range(sizes[d]) for d in ("dp", "pp", "cp", "tp"))):
        c = Coord(*vals)
        want, stride = 0, 1
        for d in dims:
            want += getattr(c, d) * stride
            stride *= sizes[d]
        assert L.rank(c) == want and L.coord(want) == c
        seen.add(want)
    assert seen == set(range(60))


def test_megatron_default_order_gives_megatrons_groups():
    """Megatron-Core's default order tp-cp-ep-dp-pp on 8 GPUs, TP2 PP2 DP2 (its docstring
    example in parallel_state): TP [0,1] [2,3] [4,5] [6,7], DP [0,2] [1,3] [4,6] [5,7],
    PP [0,4] [1,5] [2,6] [3,7]."""
    L = Layout(2, 1, 2, 2, 1, 1, 2, parse_order("tp-cp-ep-dp-pp"))
    assert sorted(L.groups("tp")) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert sorted(L.groups("dp")) == [(0, 2), (1, 3), (4, 6), (5, 7)]
    assert sorted(L.groups("pp")) == [(0, 4), (1, 5), (2, 6), (3, 7)]


def test_symmetric_engine_stays_exact_under_another_order(small_overrides):
    over = [o for o in small_overrides if not o.startswith("parallel.dp")] + ["parallel.dp=0", 'parallel.order="tp-dp-cp-pp"']
    sym = simulate(load_scenario("llama3-405b-8k", over))
    per = simulate(load_scenario("llama3-405b-8k", over + ['engine.mode="per-rank"']))
    assert sym.step_time_s == pytest.approx(per.step_time_s, rel=1e-9)
    default = simulate(load_scenario("llama3-405b-8k", small_overrides))
    # DP inside a node, PP across the two nodes: a different step (the order matters)
    assert sym.step_time_s != pytest.approx(default.step_time_s, rel=1e-6)


def test_straddling_tp16_groups_on_72_gpu_racks_by_hand():
    """8,192 ranks, TP16 innermost, 72-GPU domains: the group boundaries 16k are crossed by
    a domain boundary 72m unless 16 divides 72m, i.e. m even; m = 1..113 (72 x 113 = 8,136)
    gives 57 odd m, each inside a different group: 57 of 512 groups straddle."""
    L = Layout(16, 1, 8, 64, 1, 1, 64)
    domains = [r // 72 for r in range(8192)]
    assert straddling(L, "tp", domains) == (57, 512)
    assert straddling(Layout(8, 1, 16, 64, 1, 1, 64), "tp", domains) == (0, 1024)  # 8 divides 72


def test_gb200_tp16_warns_in_report_and_json_and_names_the_fix(capsys):
    args = ["run", "llama3-405b-8k-gb200", *sum((["--set", o] for o in GB200_TP16), []), "--set", "cluster.gpus=1152",
            "--set", "training.global_batch=72"]
    assert main(args + ["--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    # 1,152 = 16 racks: boundaries 72m, m = 1..15, odd m -> 8 of 72 groups
    assert len(warnings) == 1 and warnings[0].startswith("8 of 72 TP groups (16 ranks each")
    assert "72-GPU NVLink domain of gb200-nvl72" in warnings[0] and "use parallel.tp = 8" in warnings[0]
    assert main(args) == 0
    assert "warning: 8 of 72 TP groups" in capsys.readouterr().out
    plan = make_plan(load_scenario("llama3-405b-8k-gb200", GB200_TP16 + ["parallel.tp=8", "parallel.pp=16",
                                                                          "cluster.gpus=1152", "training.global_batch=72"]))
    from simtrain.engine.placement import placement_warnings

    assert placement_warnings(plan) == []


def test_an_order_that_scatters_tp_is_told_to_put_tp_innermost():
    plan = make_plan(load_scenario("llama3-405b-8k", ['parallel.order="dp-tp-cp-pp"']))
    from simtrain.engine.placement import placement_warnings

    (w,) = placement_warnings(plan)
    assert w.startswith("1024 of 1024 TP groups") and 'parallel.order = "tp-dp-cp-pp"' in w


def test_llama3_128k_cp_across_nodes_is_named_as_by_design():
    plan = make_plan(load_scenario("llama3-405b-128k"))
    from simtrain.engine.placement import placement_warnings

    (w,) = placement_warnings(plan)
    assert "CP groups (16 ranks each" in w and "no CP degree above 1 fits one 8-GPU domain" in w


def test_explicit_topology_domains_follow_nvlink_links():
    from simtrain.hardware.load import load_topology

    topo = load_topology("example-explicit", 4)
    d = topo.nvlink_domains()
    assert d[0] == d[1] and d[2] == d[3] and d[0] != d[2]
    assert load_topology("tpu-v5p", 64).nvlink_domains() is None  # no such tier: not checked


@pytest.mark.parametrize("order, fragment", [
    ("tp-dp-cp", "parallel.order = 'tp-dp-cp': must name tp, cp, pp and dp once each"),
    ("tp-tp-cp-pp", "must name tp, cp, pp and dp once each"),
    ("tp-cp-xp-dp", "must name tp, cp, pp and dp once each"),
])
def test_bad_order_fails_with_one_line(order, fragment, capsys):
    assert_one_line_error(["run", "--set", f"parallel.order={order}"], capsys, fragment)


def test_a_sweep_over_the_order_simulates_each_order(tmp_path, capsys, small_overrides):
    """The sweep's route cache is keyed by the order too: each row equals a direct run."""
    base = [o for o in small_overrides if not o.startswith("parallel.dp")]
    assert main(["sweep", *sum((["--set", o] for o in base), []), "--grid", "parallel.order=tp-cp-pp-dp,tp-dp-cp-pp",
                 "--out", str(tmp_path / "s.csv"), "--json", "--jobs", "1", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        direct = simulate(load_scenario("llama3-405b-8k", base + ["parallel.dp=0", f'parallel.order="{row["parallel.order"]}"']))
        assert row["step_time_s"] == pytest.approx(direct.step_time_s, rel=1e-12)
    assert rows[0]["step_time_s"] != pytest.approx(rows[1]["step_time_s"], rel=1e-6)


def test_a_topology_too_small_for_the_layout_fails_with_one_line(capsys):
    """example-explicit has 4 GPUs: a layout of 8 cannot be placed on it."""
    assert_one_line_error(["run", "--set", "cluster.topology=example-explicit", "--set", "cluster.gpus=8",
                           "--set", "parallel.tp=2", "--set", "parallel.pp=4", "--set", "parallel.dp=0",
                           "--set", "parallel.vp=1", "--set", 'model.name="llama3-8b"',
                           "--set", "parallel.first_stage_layers=-1", "--set", "parallel.last_stage_layers=-1",
                           "--set", "training.global_batch=8"],
                          capsys, "topology 'example-explicit' has only 4 devices")
