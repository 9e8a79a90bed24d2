"""Topologies: torus routes and slices, fat-tree tiers and routing, bisection bandwidth,
strict explicit files, and the topology / collective commands."""

from __future__ import annotations

import json

import pytest

from simtrain.cli import main
from simtrain.hardware.load import load_topology, topology_from_dict
from simtrain.hardware.topology import Topology
from simtrain.hardware.torus import slice_shape
from simtrain.scenario.errors import SimtrainError

GB = 1e9


# --- torus ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,shape", [(4, (1, 2, 2)), (8, (2, 2, 2)), (32, (2, 4, 4)), (64, (4, 4, 4)), (128, (4, 4, 8)),
                                     (512, (8, 8, 8)), (4096, (16, 16, 16)), (8960, (16, 20, 28))])
def test_slice_shape_rule_matches_google_slices(n, shape):
    assert slice_shape(n, (16, 20, 28)) == shape


def test_torus_dimension_ordered_hops_with_wraparound():
    t = load_topology("tpu-v5p", 64)  # 4x4x4, wraparound
    r = t.rank
    assert len(t.route(0, r((3, 0, 0)))) == 1  # -1 round the wrap, not 3 forward
    assert len(t.route(0, r((2, 0, 0)))) == 2
    assert len(t.route(0, r((3, 3, 3)))) == 3
    assert len(t.route(0, r((2, 2, 2)))) == 6
    assert len(t.route(r((1, 2, 3)), r((3, 0, 1)))) == 6  # 2 + 2 + 2
    path = t.route(0, r((1, 3, 2)))
    assert len(path) == 1 + 1 + 2
    # dimension order: x moves first, then y, then z; every hop joins neighbours
    assert path[0] == (0, r((1, 0, 0))) and path[1] == (r((1, 0, 0)), r((1, 3, 0)))
    assert all(t.graph.has_edge(u, v) for u, v in path)


def test_small_slice_is_a_mesh():
    t = load_topology("tpu-v5p", 32)  # 2x4x4: not whole cubes -> no wraparound
    assert t.wrap == (False, False, False)
    assert len(t.route(0, t.rank((0, 0, 3)))) == 3
    assert t.graph.number_of_edges() == 2 * (1 * 4 * 4 + 2 * 3 * 4 + 2 * 4 * 3)


def test_torus_bisection_closed_form_matches_max_flow_and_google():
    t = load_topology("tpu-v5p", 64)
    link = 90 * GB
    assert t.bisection_bandwidth() == pytest.approx(2 * 16 * link)  # cut a 4-axis: 2 * 16 links
    assert t.bisection_bandwidth() == pytest.approx(Topology.bisection_bandwidth(t))
    v4 = load_topology("tpu-v4", 4096)
    assert v4.bisection_bandwidth() == pytest.approx(24e12, rel=0.05)  # Google: 24 TB/s per v4 pod


def test_torus_collective_algos_only_for_full_axes():
    t = load_topology("tpu-v5p", 64)
    assert t.collective_algos(tuple(range(64))) == ["torus"]
    assert t.collective_algos(tuple(range(16))) == ["torus"]  # the z = 0 plane
    assert t.collective_algos((0, 1, 2)) == []


def test_explicit_shape_and_bad_count():
    base = {"kind": "torus", "name": "t", "device": "TPU-v5p", "ici": {"bandwidth_gbps": 800}}
    t = topology_from_dict({**base, "shape": [4, 4, 8]}, 128)
    assert t.shape == (4, 4, 8)
    with pytest.raises(SimtrainError) as e:
        topology_from_dict(base, 97)
    assert "\n" not in str(e.value) and "97" in str(e.value)


# --- fat tree ------------------------------------------------------------------------
def _ft(**fabric):
    return {
        "kind": "fat-tree", "name": "ft", "device": "H100-SXM", "gpus_per_node": 4,
        "nic": {"bandwidth_gbps": 400, "efficiency": 1.0}, "nvlink": {"bandwidth_gbps": 3600, "efficiency": 1.0},
        "fabric": fabric,
    }


@pytest.mark.parametrize("fabric,n", [
    ({}, 64),
    ({"nodes_per_leaf": 2, "spines": 4}, 64),
    ({"rail_optimized": False, "nodes_per_leaf": 2, "spines": 4, "oversubscription": 2.0}, 64),
    ({"rail_optimized": False, "nodes_per_leaf": 2, "spines": 2, "tiers": 3, "nodes_per_pod": 4, "cores": 4,
      "spine_oversubscription": 4.0}, 64),
    ({"nodes_per_leaf": 2, "spines": 2, "tiers": 3, "nodes_per_pod": 4, "cores": 2}, 38),
    # odd counts, partial nodes and units, a node straddling the halves
    ({"nodes_per_leaf": 3, "spines": 3, "oversubscription": 3.0}, 61),
    ({"rail_optimized": False, "nodes_per_leaf": 2, "spines": 4, "oversubscription": 2.0}, 37),
    ({"nodes_per_leaf": 2, "spines": 2, "tiers": 3, "nodes_per_pod": 4, "cores": 2}, 101),
    ({}, 1), ({}, 3),
])
def test_fat_tree_bisection_reduced_graph_equals_full_max_flow(fabric, n):
    t = topology_from_dict(_ft(**fabric), n)
    assert t.bisection_bandwidth() == pytest.approx(Topology.bisection_bandwidth(t), rel=1e-9)


def test_fat_tree_bisection_by_hand():
    # classic, 2 nodes x 4 GPUs per leaf, 2:1: halves = leaves 0-3 vs 4-7 (32 GPUs each);
    # the cut is the uplinks of 4 leaves: 4 * 8 NICs * 50 GB/s / 2 = 800 GB/s
    t = topology_from_dict(_ft(rail_optimized=False, nodes_per_leaf=2, spines=4, oversubscription=2.0), 64)
    assert t.bisection_bandwidth() == pytest.approx(800 * GB)
    # 3 tiers, pods of 4 nodes (16 GPUs), 4:1 at the spines: halves = 2 pods each; the cut
    # is the pods' core uplinks: 2 pods * 16 NICs * 50 GB/s / 4 = 400 GB/s
    t3 = topology_from_dict(_ft(rail_optimized=False, nodes_per_leaf=2, spines=2, tiers=3, nodes_per_pod=4,
                                cores=4, spine_oversubscription=4.0), 64)
    assert t3.bisection_bandwidth() == pytest.approx(400 * GB)
    h100 = load_topology("dgx-h100", 512)  # 2 scalable units, non-blocking: 256 NICs * 46 GB/s
    assert h100.bisection_bandwidth() == pytest.approx(256 * 46 * GB)


def test_adaptive_spreads_over_spines_ecmp_picks_one():
    t = topology_from_dict(_ft(nodes_per_leaf=2, spines=4), 16)
    load = t.route_load(0, 8, detailed=True)  # node 0 -> node 2: different scalable units, same rail
    ups = [f for (u, v), f in load if str(u).startswith("leaf") and str(v).startswith("spine")]
    assert len(ups) == 4 and sum(ups) == pytest.approx(1.0)
    e = topology_from_dict(_ft(nodes_per_leaf=2, spines=4, routing="ecmp"), 16)
    assert [f for _, f in e.route_load(0, 8)] == [1.0] * 4


def test_three_tier_cross_pod_route_goes_through_a_core():
    t = topology_from_dict(_ft(rail_optimized=False, nodes_per_leaf=2, spines=2, tiers=3, nodes_per_pod=4, cores=4), 64)
    path = t.route(0, 63)
    assert len(path) == 6 and str(path[2][1]).startswith("core")
    fr = dict(t.route_load(0, 63, detailed=True))
    core_up = [f for (u, v), f in fr.items() if str(v).startswith("core")]
    assert len(core_up) == 4 and sum(core_up) == pytest.approx(1.0)  # 2 spines x 2 cores per plane


@pytest.mark.parametrize("fabric,match", [
    ({"tiers": 4}, "fabric.tiers"),
    ({"routing": "random"}, "fabric.routing"),
    ({"tiers": 3, "nodes_per_pod": 3, "nodes_per_leaf": 2}, "nodes_per_pod"),
    ({"spine": 4}, "unknown key fabric.spine"),
])
def test_bad_fabric_is_one_line(fabric, match):
    with pytest.raises(SimtrainError, match=match) as e:
        topology_from_dict(_ft(**fabric), 16)
    assert "\n" not in str(e.value)


def _catalog_topologies() -> list[str]:
    from simtrain.scenario.files import available

    return sorted(available("topologies"))


def test_the_catalog_lists_its_topologies():
    # (the test below runs over whatever the catalog holds; it must hold these at least)
    assert {"dgx-h100", "dgx-a100", "dgx-b200", "gb200-nvl72", "dgx-b300", "gb300-nvl72", "example-explicit",
            "tpu-v5p"} <= set(_catalog_topologies())


@pytest.mark.parametrize("name", _catalog_topologies())
def test_every_catalog_topology_loads(name):
    n = 4 if name == "example-explicit" else 64
    t = load_topology(name, n)
    assert t.num_gpus >= n and t.bisection_bandwidth() > 0


# --- explicit ------------------------------------------------------------------------
def _explicit(nodes=None, links=None, **top):
    nodes = nodes if nodes is not None else [{"name": "a", "kind": "gpu"}, {"name": "b", "kind": "gpu"}, {"name": "s"}]
    links = links if links is not None else [{"a": "a", "b": "s", "bandwidth_gbps": 100}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]
    return {"kind": "explicit", "name": "x", "nodes": nodes, "links": links, **top}


def test_explicit_ok():
    t = topology_from_dict(_explicit(), 2)
    assert t.num_gpus == 2 and len(t.route(0, 1)) == 2


@pytest.mark.parametrize("data,match", [
    (_explicit(nodes=[{"name": "a", "kind": "gpu"}, {"name": "b", "kind": "gpu"}, {"name": "s"}, {"name": "c", "kind": "gpu"}]),
     "not connected"),
    (_explicit(links=[{"a": "a", "b": "s", "bandwidth_gbps": 0}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]), "bandwidth"),
    (_explicit(links=[{"a": "a", "b": "s", "bandwidth_gbps": -5}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]), "bandwidth"),
    (_explicit(links=[{"a": "a", "b": "s"}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]), "bandwidth"),
    (_explicit(links=[{"a": "a", "b": "zz", "bandwidth_gbps": 1}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]), "unknown node"),
    (_explicit(links=[{"a": "a", "b": "s", "bandwith_gbps": 1}, {"a": "b", "b": "s", "bandwidth_gbps": 100}]), "unknown key"),
    (_explicit(colour="red"), "unknown key colour"),
    (_explicit(nodes=[{"name": "a", "kind": "gpu"}, {"name": "a", "kind": "gpu"}]), "declared twice"),
])
def test_malformed_explicit_is_rejected_with_one_line(data, match, tmp_path, capsys):
    with pytest.raises(SimtrainError, match=match) as e:
        topology_from_dict(data, 2)
    assert "\n" not in str(e.value)
    # and through the CLI: exit code 2, one line on stderr
    path = tmp_path / "bad.toml"
    path.write_text(_to_toml(data))
    assert main(["topology", str(path), "--gpus", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simtrain: error:") and "\n" not in err


def _to_toml(data: dict) -> str:
    def val(v):
        return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")

    out = [f"{k} = {val(v)}" for k, v in data.items() if k not in ("nodes", "links")]
    for table in ("nodes", "links"):
        for entry in data.get(table, []):
            out.append(f"[[{table}]]")
            out += [f"{k} = {val(v)}" for k, v in entry.items()]
    return "\n".join(out) + "\n"


# --- CLI -----------------------------------------------------------------------------
def test_topology_command_json(capsys):
    assert main(["topology", "dgx-h100", "--gpus", "16", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("name", "devices", "switches", "links", "tiers", "bisection_gbytes_per_s"):
        assert key in s
    assert s["devices"] == 16 and s["links"]["nvlink"]["count"] == 16


def test_topology_command_text_and_draw(tmp_path, capsys):
    png = tmp_path / "t.png"
    assert main(["topology", "tpu-v5p", "--gpus", "64", "--draw", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert "bisection" in capsys.readouterr().out
    assert main(["topology", "tpu-v5p", "--gpus", "4096", "--draw", str(tmp_path / "big.png")]) == 2
    assert "too many" in capsys.readouterr().err


def test_collective_command_json_rows(capsys):
    assert main(["collective", "all-reduce", "--topology", "dgx-h100", "--gpus", "16", "--sizes", "1K:8K", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["size_bytes"] for r in rows] == [1024, 2048, 4096, 8192]
    for r in rows:
        assert set(r) == {"size_bytes", "time_s", "algbw_gbps", "busbw_gbps", "algo"}
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * 2 * 15 / 16)


def test_collective_command_text_and_errors(capsys):
    assert main(["collective", "all-gather", "--topology", "tpu-v5p", "--gpus", "64", "--size", "64M"]) == 0
    assert "busbw" in capsys.readouterr().out
    assert main(["collective", "all-reduce", "--topology", "tpu-v5p", "--gpus", "97"]) == 2
    assert main(["collective", "all-reduce", "--gpus", "8", "--sizes", "8K:1K"]) == 2
    assert main(["collective", "all-reduce", "--gpus", "8", "--algo", "torus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("simtrain: error:") for line in err)


@pytest.mark.parametrize("tiers", [2, 3])
def test_aggregated_spine_tier_is_exact(tiers):
    """With perfect adaptive spreading, one aggregated uplink per leaf (and pod) gives the
    same max-min rates as the individual equal-cost links."""
    import simpy

    from simtrain.network import collectives as coll
    from simtrain.network.flows import FlowNetwork

    kw = dict(rail_optimized=False, nodes_per_leaf=2, spines=4, oversubscription=2.0)
    if tiers == 3:
        kw.update(tiers=3, nodes_per_pod=4, cores=8)
    t = topology_from_dict(_ft(**kw), 64)
    group = list(range(0, 64, 8))  # one rank per node: every ring hop crosses the fabric

    def run(detailed):
        orig = t.route_load
        t.route_load = lambda s, d: orig(s, d, detailed=detailed)
        try:
            env = simpy.Environment()
            net = FlowNetwork(env, t)
            (ph,) = coll.ring("all-reduce", group, 2**30)
            net.register("ar", coll.phase_load(ph, t))
            net.register("x", coll.phase_load(coll.Phase(((1, 60),), 1.0, 1), t))
            net.transfer("ar", ph.nbytes)
            net.transfer("x", 2**29)
            env.run()
            return env.now
        finally:
            t.route_load = orig

    assert run(False) == pytest.approx(run(True), rel=1e-12)


@pytest.mark.parametrize("name,n", [("dgx-h100", 512), ("dgx-h100", 100), ("example-3tier", 6144), ("example-3tier", 3100),
                                    ("example-classic-2to1", 256), ("gb200-nvl72", 144), ("tpu-v5p", 128), ("tpu-v5p", 8),
                                    ("tpu-v4", 64)])
def test_closed_form_inventory_equals_counting_the_graph(name, n):
    t = load_topology(name, n)
    a, b = t.inventory(), Topology.inventory(t)
    assert a["switches"] == b["switches"] and a["hosts"] == b["hosts"]
    assert {k: (c, sorted(set(caps))) for k, (c, caps) in a["links"].items()} == b["links"]


def test_topology_summary_of_a_million_gpus_without_the_graph(capsys):
    from simtrain.cli import main

    assert main(["topology", "dgx-h100", "--gpus", "1048576", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    # by hand: 131,072 DGX nodes; 4,096 scalable units of 32 nodes x 8 rail leaves; 16 spines
    assert s["hosts"] == 131072 and s["switches"] == {"leaf": 32768, "nvsw": 131072, "spine": 16}
    assert s["links"]["nic"]["count"] == s["links"]["nvlink"]["count"] == 1048576
    assert s["links"]["spine"]["count"] == 32768 * 16
    # non-blocking: the cut carries every NIC of one half, 524,288 x 46 GB/s
    assert s["bisection_gbytes_per_s"] == pytest.approx(524288 * 46.0, rel=1e-9)
