"""Flow network and ring collectives against the alpha-beta closed form."""

import pytest
import simpy

from simtrain.hardware.load import topology_from_dict
from simtrain.network.comm import Comm
from simtrain.network.flows import FlowNetwork, max_min_rates

LINK_GBPS = 800.0  # 100 GB/s per direction
LAT_US = 3.0


def ring_topology(n: int):
    """n GPUs on a directed ring of identical links (each GPU -> next is one hop)."""
    nodes = [{"name": f"g{i}", "kind": "gpu"} for i in range(n)]
    # with 2 GPUs the ring's two links are one cable's two directions: one-way links, so that
    # the cable is not listed twice (an explicit topology refuses that)
    links = [{"a": f"g{i}", "b": f"g{(i + 1) % n}", "bandwidth_gbps": LINK_GBPS, "latency_us": LAT_US, "duplex": n > 2}
             for i in range(n)]
    return topology_from_dict({"name": "ring", "kind": "explicit", "gpus_per_node": 1, "nodes": nodes, "links": links}, n)


def run_collective(topo, op, group, size, algo="ring"):
    env = simpy.Environment()
    net = FlowNetwork(env, topo)
    comm = Comm(net, topo, algo)
    _, phases = comm.collective(op, group, size)

    def proc():
        for ph in phases:
            yield net.transfer(ph.key, ph.nbytes, ph.latency)

    env.process(proc())
    env.run()
    return env.now


@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("size", [1e3, 1e6, 1e9])
def test_ring_allreduce_matches_alpha_beta(n, size):
    topo = ring_topology(n)
    B = LINK_GBPS * 1e9 / 8
    alpha = LAT_US * 1e-6
    expected = 2 * (n - 1) / n * size / B + 2 * (n - 1) * alpha
    assert run_collective(topo, "all-reduce", list(range(n)), size) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("op", ["reduce-scatter", "all-gather"])
def test_ring_reduce_scatter_all_gather(op):
    n, size = 8, 2**30
    topo = ring_topology(n)
    B, alpha = LINK_GBPS * 1e9 / 8, LAT_US * 1e-6
    assert run_collective(topo, op, list(range(n)), size) == pytest.approx((n - 1) / n * size / B + (n - 1) * alpha, rel=1e-9)


def test_two_equal_flows_on_one_link_take_twice_as_long():
    topo = topology_from_dict({"name": "pair", "kind": "explicit",
                               "nodes": [{"name": "a", "kind": "gpu"}, {"name": "b", "kind": "gpu"}],
                               "links": [{"a": "a", "b": "b", "bandwidth_gbps": 8.0, "latency_us": 0.0}]}, 2)

    def run(k):
        env = simpy.Environment()
        net = FlowNetwork(env, topo)
        for i in range(k):
            net.register(("f", i), {(0, 1): 1.0})
        done = [net.transfer(("f", i), 1e9) for i in range(k)]
        env.run()
        assert all(e.processed for e in done)
        return env.now

    assert run(1) == pytest.approx(1.0)  # 1 GB at 1 GB/s
    assert run(2) == pytest.approx(2 * run(1))


def test_max_min_three_flows_two_links_by_hand():
    # links: A cap 10, B cap 4. flow x on A only, y on A and B, z on B only.
    # progressive filling: B saturates first at level 2 (y and z get 2); x then takes A's rest: 10 - 2 = 8
    rates = max_min_rates({"x": [(0, 1.0)], "y": [(0, 1.0), (1, 1.0)], "z": [(1, 1.0)]}, [10.0, 4.0])
    assert rates == pytest.approx({"x": 8.0, "y": 2.0, "z": 2.0})


def test_late_arrival_shares_the_link_from_then_on():
    topo = topology_from_dict({"name": "pair", "kind": "explicit",
                               "nodes": [{"name": "a", "kind": "gpu"}, {"name": "b", "kind": "gpu"}],
                               "links": [{"a": "a", "b": "b", "bandwidth_gbps": 8.0, "latency_us": 0.0}]}, 2)
    env = simpy.Environment()
    net = FlowNetwork(env, topo)
    net.register("x", {(0, 1): 1.0})
    net.register("y", {(0, 1): 1.0})
    ends = {}

    def flow(name, delay, nbytes):
        yield env.timeout(delay)
        yield net.transfer(name, nbytes)
        ends[name] = env.now

    env.process(flow("x", 0.0, 1e9))
    env.process(flow("y", 0.5, 0.25e9))
    env.run()
    # x alone for 0.5 s (0.5 GB), then both at 0.5 GB/s: y needs 0.5 s; x finishes its last 0.25 GB alone
    assert ends["y"] == pytest.approx(1.0)
    assert ends["x"] == pytest.approx(1.25)
