"""Hardware what-ifs by --set on the topology's tiers (cluster.nvlink_gbps, cluster.nic_gbps,
latencies, efficiencies, oversubscription, ICI): the same as editing a copy of the file,
and refused with one line on a tier the topology does not have."""

import json
from pathlib import Path

import pytest

from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.hardware.load import load_topology
from simtrain.scenario.config import load_scenario
from tests.test_bad_files import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent


def test_set_nic_equals_a_copied_file_with_twice_the_infiniband(tmp_path, monkeypatch, small_overrides):
    what_if = simulate(load_scenario("llama3-405b-8k", small_overrides + ["cluster.nic_gbps=800"]))
    (tmp_path / "topologies").mkdir()
    text = (ROOT / "topologies" / "dgx-h100.toml").read_text()
    assert "bandwidth_gbps = 400 " in text
    (tmp_path / "topologies" / "dgx-h100.toml").write_text(text.replace("bandwidth_gbps = 400 ", "bandwidth_gbps = 800 "))
    monkeypatch.setenv("SIMTRAIN_HOME", str(tmp_path))
    copied = simulate(load_scenario("llama3-405b-8k", small_overrides))
    assert what_if.step_time_s == copied.step_time_s and what_if.breakdown == copied.breakdown
    monkeypatch.delenv("SIMTRAIN_HOME")
    base = simulate(load_scenario("llama3-405b-8k", small_overrides))
    assert base.breakdown["dp"] > what_if.breakdown["dp"]  # DP crosses the two nodes: faster NICs help


def test_tier_bandwidths_follow_the_settings():
    """Per device per direction: Gb/s / 8 x efficiency (the file's 0.8 for NVLink, 0.92 NIC)."""
    topo = load_topology("dgx-h100", 16, tiers={"nvlink_gbps": 7200, "nic_gbps": 800, "oversubscription": 2.0})
    bw = dict(topo.tier_bandwidth())
    assert bw["nvlink"] == pytest.approx(7200e9 / 8 * 0.8, rel=1e-12)
    assert bw["nic"] == pytest.approx(800e9 / 8 * 0.92, rel=1e-12)
    assert bw["leaf uplink"] == pytest.approx(800e9 / 8 * 0.92 / 2, rel=1e-12)
    eff = dict(load_topology("dgx-h100", 16, tiers={"nic_efficiency": 0.5}).tier_bandwidth())
    assert eff["nic"] == pytest.approx(400e9 / 8 * 0.5, rel=1e-12)
    lat = load_topology("dgx-h100", 16, tiers={"nvlink_latency_us": 0.0, "nic_latency_us": 10.0})
    assert lat.route_latency(0, 1) == 0.0 and lat.route_latency(0, 8) == pytest.approx(2 * 10e-6, rel=1e-12)
    ici = dict(load_topology("tpu-v5p", 64, tiers={"ici_gbps": 1600}).tier_bandwidth())
    assert ici["ici link"] == pytest.approx(1600e9 / 8 * 0.9, rel=1e-12)


def test_explicit_topology_changes_the_links_of_that_kind_only():
    topo = load_topology("example-explicit", 4, tiers={"nic_gbps": 1600})
    caps = {(u, v): d["capacity"] for u, v, d in topo.graph.edges(data=True)}
    kinds = {(u, v): d["kind"] for u, v, d in topo.graph.edges(data=True)}
    assert all(c == pytest.approx(1600e9 / 8, rel=1e-12) for e, c in caps.items() if kinds[e] == "nic")
    assert all(c == pytest.approx(3600e9 / 8, rel=1e-12) for e, c in caps.items() if kinds[e] == "nvlink")


def test_a_sweep_over_nic_latency_simulates_each_value(tmp_path, capsys, small_overrides):
    """The sweep's route cache is keyed by the what-ifs too: each row equals a direct run."""
    sets = sum((["--set", o] for o in small_overrides if not o.startswith("parallel.dp")), [])
    out = tmp_path / "s.csv"
    assert main(["sweep", *sets, "--grid", "cluster.nic_latency_us=1,400", "--out", str(out), "--json", "--jobs", "1",
                 "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        direct = simulate(load_scenario("llama3-405b-8k", [o for o in small_overrides if not o.startswith("parallel.dp")]
                                        + ["parallel.dp=0", f"cluster.nic_latency_us={row['cluster.nic_latency_us']}"]))
        assert row["step_time_s"] == pytest.approx(direct.step_time_s, rel=1e-12)
    assert rows[0]["step_time_s"] < rows[1]["step_time_s"]


@pytest.mark.parametrize("settings, fragment", [
    (["cluster.ici_gbps=800"], "cluster.ici_gbps = 800.0: topology 'dgx-h100' (fat-tree) has no ici tier to change; "
                                "its what-ifs are cluster.nvlink_gbps"),
    (["cluster.topology=tpu-v5p", "cluster.nvlink_gbps=7200"], "has no nvlink tier to change; its what-ifs are cluster.ici_gbps"),
    (["cluster.spine_oversubscription=2"], "has no spine uplink tier (3-tier fat trees) to change"),
    (["cluster.nic_efficiency=1.5"], "cluster.nic_efficiency = 1.5: must be in (0, 1]"),
    (["cluster.nvlink_latency_us=-3"], "cluster.nvlink_latency_us = -3.0: must be in [0, 1e6] microseconds"),
    (["cluster.nic_gbps=-400"], "cluster.nic_gbps = -400.0: must be at least 0.001 Gb/s"),
    (["cluster.nic_gbs=800"], "did you mean 'nic_gbps'"),
])
def test_bad_tier_settings_fail_with_one_line(settings, fragment, capsys):
    assert_one_line_error(["run", *sum((["--set", s] for s in settings), [])], capsys, fragment)


def test_explicit_topology_without_that_kind_of_link_says_what_it_has(capsys):
    assert_one_line_error(["run", "--set", "cluster.topology=example-explicit", "--set", "cluster.ici_gbps=100",
                           "--set", "cluster.gpus=4", "--set", "parallel.pp=2", "--set", "parallel.tp=2",
                           "--set", "parallel.dp=0"],
                          capsys, "topology 'example-explicit' (explicit) has no ici tier", "cluster.nic_gbps")


def test_topology_and_collective_commands_take_link_what_ifs(capsys):
    # 2 nodes of 8: a ring all-reduce of 1 GiB crosses the NICs; at 800 Gb/s instead of 400
    # the inter-node part halves, so the whole collective gets faster but not 2x (NVLink legs
    # stay). The topology summary shows the NIC tier at 800 Gb/s x the file's efficiency.
    def busbw(extra):
        assert main(["collective", "all-reduce", "--gpus", "16", "--size", "1G", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)[0]["busbw_gbps"]

    base, fast = busbw([]), busbw(["--set", "cluster.nic_gbps=800"])
    assert base < fast < 2 * base
    assert main(["topology", "dgx-h100", "--gpus", "16", "--json", "--set", "cluster.nic_gbps=800"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert main(["topology", "dgx-h100", "--gpus", "16", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    nic = lambda d: next(t["gbytes_per_s_per_device"] for t in d["tiers"] if t["tier"] == "nic")
    assert nic(wide) == pytest.approx(2 * nic(plain), rel=1e-9)  # same efficiency, twice the rate


@pytest.mark.parametrize("argv, fragment", [
    (["topology", "dgx-h100", "--set", "nic=3"], "expects cluster.KEY=VALUE"),
    (["topology", "dgx-h100", "--set", "cluster.tp=3"], "is not a link what-if"),
    (["topology", "dgx-h100", "--set", "cluster.nic_gbps"], "expects cluster.KEY=VALUE"),
    (["collective", "all-reduce", "--set", "cluster.nic_gbps=fast"], "is not a number"),
    (["topology", "tpu-v5p", "--set", "cluster.nic_gbps=5"], "has no nic tier"),
])
def test_bad_link_what_ifs_on_commands_get_one_line(argv, fragment, capsys):
    assert_one_line_error(argv, capsys, fragment)
