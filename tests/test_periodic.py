"""Loads from one period of the flows (simtrain.network.periodic) against routing every flow."""

import pytest

from simtrain.analysis.run import simulate
from simtrain.hardware.load import load_topology
from simtrain.network import collectives as coll
from simtrain.network.periodic import Periodic, pairs_invariant
from simtrain.scenario.config import load_scenario
from simtrain.scenario.layout import Layout


@pytest.mark.parametrize("topo,n,tp,pp", [("dgx-h100", 1024, 8, 4), ("dgx-h100", 1024, 2, 2), ("example-3tier", 6144, 8, 2),
                                          ("tpu-v5p", 512, 4, 2)])
def test_every_link_of_an_orbit_carries_the_period_load(topo, n, tp, pp):
    """For each bundle the engine registers (TP ring, DP ring, p2p, with all their copies),
    the full per-link load equals the per-orbit load on every link of the orbit, and every
    orbit the periodic load names is loaded."""
    t = load_topology(topo, n)
    L = Layout(tp, 1, pp, n // (tp * pp), 1, 1, n // (tp * pp))
    P = t.period() * 1
    while P % (tp * pp):
        P += t.period()
    per = Periodic(t, P)
    rep = L.rank
    from simtrain.scenario.layout import Coord
    base = rep(Coord(0, 0, 0, 0))
    cases = [
        (coll.ring("all-reduce", L.group("tp", base), 1.0, t)[0].pairs, [x - base for x in _offsets(L, "tp")]),
        (coll.ring("reduce-scatter", L.group("dp", base), 1.0, t)[0].pairs, _offsets(L, "dp")),
        (((base, rep(Coord(0, 1, 0, 0))),), _offsets(L, "pp")),
    ]
    for pairs, copies in cases:
        phase = coll.Phase(pairs, 1.0, 1)
        assert per.invariant(phase, tuple(copies))
        full = coll.phase_load(phase, t, copies)
        orbit = per.load(phase, copies)
        for link, m in full.items():
            assert orbit[t.orbit_link(link, P)] == pytest.approx(m, rel=1e-12), link
        assert {t.orbit_link(link, P) for link in full} == set(orbit)


def _offsets(L, kind):
    from simtrain.scenario.layout import Coord
    dims = {"tp": ("dp",), "dp": ("tp",), "pp": ("dp", "tp")}[kind]
    out = []
    for d in range(L.dp if "dp" in dims else 1):
        for t in range(L.tp if "tp" in dims else 1):
            out.append(L.rank(Coord(d, 0, 0, t)))
    return out


def test_a_ring_is_shift_invariant_and_nccls_tree_is_not():
    t = load_topology("dgx-h100", 1024)
    group = tuple(range(0, 1024, 32))  # one GPU on each of 32 nodes, four units
    ring = coll.ring("all-reduce", group, 1.0, t)[0].pairs
    tree = coll.tree("all-reduce", group, 1.0, t)[0].pairs
    assert pairs_invariant(ring, 256, 1024)
    assert not pairs_invariant(tree, 256, 1024)


GRID = [  # topology, GPUs, tp, pp, cp, zero (0: the DP tree falls back to routing every flow)
    ("dgx-h100", 1024, 8, 4, 1, 1), ("dgx-h100", 2048, 4, 4, 1, 0), ("dgx-h100", 1024, 2, 2, 2, 2),
    ("example-3tier", 6144, 8, 4, 1, 1), ("tpu-v5p", 512, 4, 2, 1, 3), ("dgx-h100", 1024, 1, 4, 1, 1),
    ("dgx-h100", 512, 16, 2, 1, 1), ("tpu-v4", 256, 4, 4, 1, 1),
]


@pytest.mark.parametrize("topo,gpus,tp,pp,cp,zero", GRID)
def test_periodic_network_simulates_exactly_as_routing_every_flow(topo, gpus, tp, pp, cp, zero, monkeypatch):
    import simtrain.engine.actions as actions

    dp = gpus // (tp * pp * cp)
    ov = ['model.name="llama3-8b"', f'cluster.topology="{topo}"', f"cluster.gpus={gpus}", f"parallel.tp={tp}",
          f"parallel.pp={pp}", f"parallel.cp={cp}", f"parallel.dp={dp}", f"parallel.zero={zero}", 'schedule.name="1f1b"',
          "parallel.vp=1", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
          f"training.global_batch={dp * 2 * pp}", "training.seq_len=4096"]
    a = simulate(load_scenario(None, ov))
    monkeypatch.setattr(actions, "periodic_network", lambda plan: None)
    b = simulate(load_scenario(None, ov))
    assert a.step_time_s == pytest.approx(b.step_time_s, rel=1e-12)
    for part in a.breakdown:
        assert a.breakdown[part] == pytest.approx(b.breakdown[part], rel=1e-12, abs=1e-15)
    hot_a, hot_b = a.extra["hotspots"]["busiest_link"], b.extra["hotspots"]["busiest_link"]
    assert hot_a["utilization"] == pytest.approx(hot_b["utilization"], rel=1e-12)
    assert hot_a["links_alike"] == hot_b["links_alike"]


@pytest.mark.parametrize("extra", [[], ["parallel.ep_node_limit=2"], ["whatif.expert_imbalance=0.3"]])
def test_expert_all_to_alls_on_a_periodic_network_equal_routing_every_flow(extra, monkeypatch):
    """Mixture of experts with DP outermost: the shift moves whole expert groups (EP8 over
    eight data-parallel replicas here), so one period of each all-to-all's flows stands for
    all of them; the step equals routing every flow."""
    import simtrain.engine.actions as actions
    from simtrain.engine.plan import make_plan
    from simtrain.engine.symmetry import periodic_network

    ov = ["cluster.gpus=2048", "parallel.dp=512", "training.global_batch=2048", 'parallel.order="tp-cp-pp-dp"', *extra]
    assert periodic_network(make_plan(load_scenario("mixtral-8x7b-64-h100", ov))).period < 2048
    a = simulate(load_scenario("mixtral-8x7b-64-h100", ov))
    monkeypatch.setattr(actions, "periodic_network", lambda plan: None)
    b = simulate(load_scenario("mixtral-8x7b-64-h100", ov))
    assert a.step_time_s == pytest.approx(b.step_time_s, rel=1e-12)
    for part in a.breakdown:
        assert a.breakdown[part] == pytest.approx(b.breakdown[part], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("op", ["all-reduce", "reduce-scatter", "all-gather"])
@pytest.mark.parametrize("algo", ["auto", "ring", "hierarchical", "tree"])
@pytest.mark.parametrize("topo,n", [("dgx-h100", 1024), ("example-3tier", 6144), ("tpu-v4", 256)])
def test_collective_over_a_whole_periodic_topology_equals_routing_every_flow(op, algo, topo, n, monkeypatch):
    """`simtrain collective` over every device generates one period's window of a ring's
    (or the hierarchical algorithm's) flows; the times equal those of the full flow list."""
    from simtrain.network import nccl

    t = load_topology(topo, n)
    if algo == "tree" and op != "all-reduce":
        return
    fast = nccl.CollectiveBench(t, op, n, algo).run(1 << 28)
    monkeypatch.setattr(t, "period", lambda: None)
    full = nccl.CollectiveBench(t, op, n, algo).run(1 << 28)
    assert fast.algo == full.algo
    assert fast.time_s == pytest.approx(full.time_s, rel=1e-12)


def test_windowed_ring_lists_one_period_of_the_full_ring():
    t = load_topology("dgx-h100", 1024)
    group = tuple(range(1024))
    (full,) = coll.ring("reduce-scatter", group, 1.0, t)
    (win,) = coll.ring("reduce-scatter", group, 1.0, t, window=256)
    assert win.period == 256 and all(s < 256 for s, _ in win.pairs)
    assert set(win.all_pairs(1024)) == set(full.pairs) and len(win.all_pairs(1024)) == len(full.pairs)
    assert (win.nbytes, win.steps) == (full.nbytes, full.steps)
    for op in ("all-reduce", "all-gather"):
        f, w = coll.hierarchical(op, group, 1.0, t), coll.hierarchical(op, group, 1.0, t, window=256)
        for a, b in zip(f, w):
            assert set(b.all_pairs(1024)) == set(a.pairs) and (a.nbytes, a.steps) == (b.nbytes, b.steps)
