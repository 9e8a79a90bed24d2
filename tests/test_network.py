"""Max-min fair sharing: hand-worked rates and completion times (numbers worked out by
hand in the comments, not taken from the code)."""

from __future__ import annotations

import pytest
import simpy

from simtrain.hardware.load import topology_from_dict
from simtrain.network.collectives import Phase, phase_load
from simtrain.network.flows import FlowNetwork, max_min_rates

REL = 1e-9


def line_topology():
    """g0 --A--> g1 --B--> g2 with A = 80 Gb/s = 10 GB/s, B = 32 Gb/s = 4 GB/s, no latency."""
    data = {
        "kind": "explicit", "name": "line",
        "nodes": [{"name": n, "kind": "gpu"} for n in ("g0", "g1", "g2")],
        "links": [
            {"a": "g0", "b": "g1", "bandwidth_gbps": 80, "latency_us": 0},
            {"a": "g1", "b": "g2", "bandwidth_gbps": 32, "latency_us": 0},
        ],
    }
    return topology_from_dict(data, 3)


def test_max_min_three_flows_two_links_by_hand():
    # link 0: capacity 10, flows f1, f2; link 1: capacity 4, flows f2, f3.
    # Fill: link 1 saturates first at 4/2 = 2 (link 0 would at 10/2 = 5): f2 = f3 = 2;
    # then f1 takes the rest of link 0: 10 - 2 = 8.
    rates = max_min_rates({"f1": [(0, 1.0)], "f2": [(0, 1.0), (1, 1.0)], "f3": [(1, 1.0)]}, [10.0, 4.0])
    assert rates == pytest.approx({"f1": 8.0, "f2": 2.0, "f3": 2.0}, rel=REL)


def test_weighted_multiplicity_counts_each_flow():
    # a bundle with 2 flows on a 12-capacity link and a single flow: 2r + r = 12 -> r = 4
    rates = max_min_rates({"pair": [(0, 2.0)], "one": [(0, 1.0)]}, [12.0])
    assert rates == pytest.approx({"pair": 4.0, "one": 4.0}, rel=REL)


def _run(topo, flows):
    """flows: name -> (src, dst, bytes); all start at t=0; returns finish times."""
    env = simpy.Environment()
    net = FlowNetwork(env, topo)
    done = {}
    for name, (s, d, _) in flows.items():
        net.register(name, phase_load(Phase(((s, d),), 1.0, 1), topo))
    for name, (_, _, nbytes) in flows.items():
        ev = net.transfer(name, nbytes)
        ev.callbacks.append(lambda _e, name=name: done.__setitem__(name, env.now))
    env.run()
    return done


def test_three_flows_finish_times_by_hand():
    topo = line_topology()
    GB = 1e9
    # t=0..5: rates (8, 2, 2) GB/s; f3 (10 GB) ends at 5 s; f1 has moved 40, f2 10.
    # t=5..10: link B only f2 (cap 4), link A f1+f2 (cap 10): B saturates first, f2 = 4,
    #          f1 = 6; f2's 20 GB left end at 10 s; f1 moved 30 more, 10 GB left.
    # t=10..11: f1 alone at 10 GB/s.
    done = _run(topo, {"f1": (0, 1, 80 * GB), "f2": (0, 2, 30 * GB), "f3": (1, 2, 10 * GB)})
    assert done == pytest.approx({"f3": 5.0, "f2": 10.0, "f1": 11.0}, rel=REL)


def test_two_equal_flows_take_twice_as_long():
    topo = line_topology()
    alone = _run(topo, {"a": (0, 1, 5e9)})["a"]
    both = _run(topo, {"a": (0, 1, 5e9), "b": (0, 1, 5e9)})
    assert alone == pytest.approx(0.5, rel=REL)  # 5 GB at 10 GB/s
    assert both["a"] == pytest.approx(2 * alone, rel=REL) and both["b"] == pytest.approx(2 * alone, rel=REL)


def test_collective_and_transfer_share_a_nic():
    """A 2-rank ring all-reduce (0 <-> 8) and a send 0 -> 8 on dgx-h100 share GPU 0's NIC
    and the leaf's port to GPU 8 (same rail leaf). NIC 400 Gb/s * 0.92 = 46 GB/s; route
    latency GPU -> leaf -> GPU = 2 * 2.5 us (dgx-h100.toml)."""
    from simtrain.hardware.load import load_topology
    from simtrain.network.comm import Comm

    topo = load_topology("dgx-h100", 16)
    env = simpy.Environment()
    net = FlowNetwork(env, topo)
    comm = Comm(net, topo, "ring")
    S, B, a = 1e9, 46e9, 5e-6
    _, ar = comm.collective("all-reduce", (0, 8), S)
    sr = comm.p2p(0, 8, S)
    done = {}

    def run(name, phases):
        for ph in phases:
            yield net.transfer(ph.key, ph.nbytes, ph.latency)
        done[name] = env.now

    env.process(run("ar", ar))
    env.process(run("send", sr))
    env.run()
    # all-reduce over 2 ranks: each flow carries 2(n-1)/n * S = S after 2 latency steps;
    # the send carries S after 1 step. The send runs alone from a to 2a (moves B*a), then
    # both at B/2: the send ends at 2a + 2(S - B a)/B; the all-reduce has then moved
    # S - B a and finishes its last B a alone at B.
    t_send = 2 * a + 2 * (S - B * a) / B
    t_ar = t_send + a
    assert done["send"] == pytest.approx(t_send, rel=REL)
    assert done["ar"] == pytest.approx(t_ar, rel=REL)


@pytest.mark.parametrize("seed", range(40))
def test_max_min_rates_are_feasible_and_every_bundle_has_a_bottleneck(seed: int) -> None:
    """The defining properties of weighted max-min fairness, on random instances: no class
    carries more than its capacity, and every bundle crosses a saturated class on which no
    other bundle gets a higher rate (so no bundle can rise without lowering a slower one).
    Tolerance 1e-9 relative."""
    import random

    rng = random.Random(seed)
    n_cls = rng.randint(1, 12)
    capacity = [rng.choice([1.0, 2.5, 10.0, 40.0]) * rng.uniform(0.5, 1.5) for _ in range(n_cls)]
    bundles = {}
    for b in range(rng.randint(1, 25)):
        chosen = rng.sample(range(n_cls), rng.randint(1, min(4, n_cls)))
        bundles[b] = [(c, float(rng.choice([1, 1, 2, 3]))) for c in chosen]
    rates = max_min_rates(bundles, capacity)
    load = [0.0] * n_cls
    for b, cls in bundles.items():
        for c, m in cls:
            load[c] += m * rates[b]
    for c in range(n_cls):
        assert load[c] <= capacity[c] * (1 + 1e-9)
    for b, cls in bundles.items():
        bottlenecks = [
            c for c, _ in cls
            if load[c] >= capacity[c] * (1 - 1e-9)
            and all(rates[o] <= rates[b] * (1 + 1e-9) for o, ocls in bundles.items() if any(oc == c for oc, _ in ocls))
        ]
        assert bottlenecks, (seed, b, rates[b])


@pytest.mark.parametrize("seed", range(40))
def test_max_min_rates_fold_each_bundles_own_classes(seed: int) -> None:
    """Given the users of each class, a bundle's classes that no other bundle uses count as
    one entry at their lowest level: the rates are those of the full filling (to 1e-12;
    ties between classes at one level may be taken in another order)."""
    import random

    rng = random.Random(seed)
    n_cls = rng.randint(1, 40)
    capacity = [rng.choice([1.0, 2.5, 10.0, 40.0]) * rng.uniform(0.5, 1.5) for _ in range(n_cls)]
    bundles = {}
    for b in range(rng.randint(1, 12)):
        chosen = rng.sample(range(n_cls), rng.randint(1, min(12, n_cls)))
        bundles[b] = [(c, float(rng.choice([1, 1, 2, 3]))) for c in chosen]
    users: dict[int, set] = {}
    for b, cls in bundles.items():
        for c, _ in cls:
            users.setdefault(c, set()).add(b)
    full = max_min_rates(bundles, capacity)
    folded = max_min_rates(bundles, capacity, users)
    assert folded == pytest.approx(full, rel=1e-12)
