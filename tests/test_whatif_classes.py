"""What-ifs in the default mode: one representative per class of devices that behave
alike (simtrain.engine.refine), equal to simulating every device (per-rank mode)."""

import pytest

from simtrain.analysis.run import simulate
from simtrain.scenario.config import load_scenario


def _small(tp=8, pp=2, dp=4, cp=1, extra=(), gb=None, seq=2048, schedule="1f1b", vp=1):
    return ['model.name="llama3-8b"', "cluster.gpus=0", f"parallel.tp={tp}", f"parallel.pp={pp}", f"parallel.dp={dp}",
            f"parallel.cp={cp}", f"parallel.vp={vp}", f'schedule.name="{schedule}"', "parallel.first_stage_layers=-1",
            "parallel.last_stage_layers=-1", f"training.global_batch={gb or dp * 4}", f"training.seq_len={seq}", *extra]


# 512 GPUs = two scalable units: data-parallel rings cross the units' leaf uplinks
TWO_UNITS = ['model.name="llama3-8b"', "cluster.gpus=512", "parallel.tp=8", "parallel.pp=2", "parallel.dp=32",
             "parallel.vp=1", 'schedule.name="1f1b"', "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
             "training.global_batch=128", "training.seq_len=2048", "parallel.zero=0", "parallel.overlap_grad_reduce=false"]

CASES = {
    "straggler": _small(extra=["whatif.slow_devices=[13]", "whatif.slowdown=1.3"]),
    "straggler, TP2 CP2": _small(tp=2, pp=2, dp=2, cp=2, seq=8192, extra=["whatif.slow_devices=[3]", "whatif.slowdown=1.5"]),
    "straggler, interleaved": _small(tp=2, pp=4, dp=4, vp=2, schedule="interleaved", gb=32,
                                     extra=["whatif.slow_devices=[5]", "whatif.slowdown=1.4"]),
    "straggler, FSDP": _small(tp=1, pp=1, dp=8, extra=["parallel.zero=3", "whatif.slow_devices=[2]", "whatif.slowdown=1.2"]),
    "two stragglers": _small(extra=["whatif.slow_devices=[3, 40]", "whatif.slowdown=1.25"]),
    "random slow fraction": _small(tp=2, pp=4, dp=4, extra=["whatif.random_slow_fraction=0.1", "whatif.slowdown=1.2"]),
    "degraded NIC": _small(extra=['whatif.degraded_links=["0-leaf0"]', "whatif.link_bandwidth_factor=0.5", "parallel.zero=0"]),
    "failed NIC": _small(extra=['whatif.failed_links=["0-leaf0"]']),
    "degraded leaf uplink": TWO_UNITS + ['whatif.degraded_links=["leaf0-spine3"]', "whatif.link_bandwidth_factor=0.02"],
    "failed leaf uplink": TWO_UNITS + ['whatif.failed_links=["leaf0-spine3"]'],
    "failed link and a straggler": TWO_UNITS + ['whatif.failed_links=["8-leaf0"]', "whatif.slow_devices=[300]",
                                                 "whatif.slowdown=1.5"],
    # ranks placed with DP inside PP (Megatron-Core's order): groups and transfers follow it
    "straggler, DP inside PP": _small(tp=4, pp=4, dp=4, extra=['parallel.order="tp-cp-dp-pp"', "whatif.slow_devices=[9]",
                                                              "whatif.slowdown=1.3"]),
    "degraded NIC, DP innermost": _small(tp=2, pp=2, dp=8, extra=['parallel.order="dp-tp-cp-pp"',
                                                                  'whatif.degraded_links=["1-leaf1"]',
                                                                  "whatif.link_bandwidth_factor=0.3"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_what_if_classes_equal_simulating_every_device(name):
    ov = CASES[name]
    a = simulate(load_scenario(None, ov))
    b = simulate(load_scenario(None, ov + ['engine.mode="per-rank"']))
    assert len(a.extra["plan"].simulated) < b.num_gpus == len(b.extra["plan"].simulated)
    assert a.step_time_s == pytest.approx(b.step_time_s, rel=1e-9)
    assert a.mfu == pytest.approx(b.mfu, rel=1e-9)
    assert a.bubble_fraction == pytest.approx(b.bubble_fraction, rel=1e-9, abs=1e-12)
    for part in a.breakdown:
        assert a.breakdown[part] == pytest.approx(b.breakdown[part], rel=1e-9, abs=1e-12), part
    for sa, sb in zip(a.per_stage, b.per_stage):
        for part in sa:
            assert sa[part] == pytest.approx(sb[part], rel=1e-9, abs=1e-12), part
    assert a.extra["hotspots"]["slowest_device"]["compute_s"] == pytest.approx(b.extra["hotspots"]["slowest_device"]["compute_s"], rel=1e-9)


def test_the_what_ifs_change_the_step():
    """The cases above are not trivially equal: each what-if changes the result."""
    for name in ("straggler", "degraded leaf uplink", "degraded NIC", "failed link and a straggler"):
        ov = [o for o in CASES[name] if not o.startswith("whatif.")]
        assert simulate(load_scenario(None, CASES[name])).step_time_s > simulate(load_scenario(None, ov)).step_time_s, name


def test_class_counts_by_hand():
    """One straggler at (replica d*, pipeline rank p*, TP rank t*): per pipeline rank, a
    device is in d*'s replica or not, at TP rank t* or not: 4 x PP classes. A thinner
    uplink of rail 0's first leaf slows the data-parallel rings of rail 0 (TP rank 0) at
    every pipeline rank, and nothing else: 2 x PP classes."""
    plan = simulate(load_scenario(None, CASES["straggler"])).extra["plan"]
    assert len(plan.simulated) == 4 * 2
    sizes = sorted(plan.classes.size(r) for r in plan.simulated)
    # per pipeline rank: the straggler, its 7 TP peers, 3 replicas x 1, 3 replicas x 7
    assert sizes == sorted([1, 7, 3, 21] * 2)
    # (with plain all-reduce the binary-tree candidate, whose flows differ by position,
    # splits the classes further; the distributed optimizer has ring phases only)
    ov = TWO_UNITS + ["parallel.zero=2", 'whatif.degraded_links=["leaf0-spine3"]', "whatif.link_bandwidth_factor=0.02"]
    plan = simulate(load_scenario(None, ov)).extra["plan"]
    assert len(plan.simulated) == 2 * 2
    assert sorted(plan.classes.size(r) for r in plan.simulated) == sorted([32, 32 * 7] * 2)


def test_what_ifs_that_make_every_device_differ_simulate_every_device():
    for extra in (["whatif.compute_jitter=0.02"], ["whatif.random_slowdown_sigma=0.02"]):
        r = simulate(load_scenario(None, _small(tp=2, pp=2, dp=2, extra=extra)))
        assert len(r.extra["plan"].simulated) == 8


def test_no_what_if_keeps_one_device_per_pipeline_rank():
    r = simulate(load_scenario(None, _small()))
    assert r.extra["plan"].classes.kind == "pipeline" and len(r.extra["plan"].simulated) == 2


@pytest.mark.parametrize("extra,field", [
    (["whatif.slowdown=1.5"], "whatif.slowdown"),  # no device named
    (["whatif.slow_devices=[1]"], "whatif.slow_devices"),  # slowdown left at 1.0
    (["whatif.random_slow_fraction=0.5"], "whatif.random_slow_fraction"),
    (['whatif.degraded_links=["0-leaf0"]'], "whatif.degraded_links"),  # bandwidth factor left at 1.0
    (["whatif.link_bandwidth_factor=0.5"], "whatif.link_bandwidth_factor"),  # no link named
])
def test_half_a_what_if_is_refused_not_ignored(extra, field):
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.errors import SimtrainError

    with pytest.raises(SimtrainError, match=f"^{field} = .*so .* would"):
        make_plan(load_scenario(None, _small(extra=extra)))


@pytest.mark.parametrize("name", ["failed link and a straggler", "straggler, TP2 CP2", "degraded NIC"])
def test_structure_routes_every_group_as_the_topology_does(name):
    """The batched routes (simtrain.engine.structure) against coll.phases + phase_load per
    group: the loads, slowest route latency and rate alone of every candidate phase."""
    from simtrain.engine.plan import make_plan
    from simtrain.engine.structure import Structure
    from simtrain.network import collectives as coll

    plan = make_plan(load_scenario(None, CASES[name]))
    st, topo = Structure(plan), plan.topology
    checked = 0
    for b in st.blocks:
        for j, base in enumerate(b.bases.tolist()[:40]):
            group = tuple(base + x for x in b.rel)
            for op, algo, i, nbytes, steps, ps in b.entries:
                ph = coll.phases(op, algo, group, 1.0, topo)[i]
                assert tuple((x - base, y - base) for x, y in ph.pairs) == b.pair_sets[ps]
                want = coll.phase_load(ph, topo)
                got = st.load(b, ps, [j])
                assert got.keys() == want.keys()
                assert all(got[k] == pytest.approx(v, rel=1e-12) for k, v in want.items())
                assert b.alpha[ps][j] == pytest.approx(coll.phase_latency(ph, topo) / steps, rel=1e-12)
                rate = min(topo.link(l).capacity / m for l, m in want.items())
                assert b.rate[ps][j] == pytest.approx(rate, rel=1e-12)
                checked += 1
    assert checked > 50


def test_per_rank_mode_refuses_a_run_too_large_for_memory(capsys):
    from tests.test_bad_files import assert_one_line_error

    # above per-rank's device limit: refused before the topology is built
    assert_one_line_error(["run", "--set", "cluster.gpus=131072", "--set", "parallel.dp=1024", "--set",
                           "training.global_batch=8192", "--set", 'engine.mode="per-rank"'], capsys,
                          "engine.mode = 'per-rank'", "131,072 devices", 'use engine.mode = "symmetric"')
    # within it, but its actions and records would not fit in memory
    assert_one_line_error(["run", "--set", "cluster.gpus=65536", "--set", "parallel.dp=512", "--set",
                           "training.global_batch=16384", "--set", 'engine.mode="per-rank"'], capsys,
                          "engine.mode = 'per-rank'", "GiB for 65,536 devices", 'use engine.mode = "symmetric"')
    assert_one_line_error(["run", "--set", "cluster.gpus=131072", "--set", "parallel.dp=1024", "--set",
                           "training.global_batch=8192", "--set", "whatif.compute_jitter=0.01"], capsys,
                          "whatif.compute_jitter = 0.01", "makes every device differ")


def test_mixture_of_experts_with_what_ifs_simulates_every_device_in_the_default_mode():
    """What-if classes do not follow expert groups yet: a mixture-of-experts model with a
    straggler or a thinner cable simulates every device (and so equals per-rank mode);
    without what-ifs it keeps one device per pipeline rank."""
    moe = ["cluster.gpus=64", "parallel.dp=16", "training.global_batch=64"]
    plain = simulate(load_scenario("mixtral-8x7b-64-h100", moe))
    assert len(plain.extra["plan"].simulated) == 4
    for extra in (["whatif.slow_devices=[5]", "whatif.slowdown=1.3"],
                  ['whatif.degraded_links=["0-leaf0"]', "whatif.link_bandwidth_factor=0.5"]):
        a = simulate(load_scenario("mixtral-8x7b-64-h100", moe + extra))
        b = simulate(load_scenario("mixtral-8x7b-64-h100", moe + extra + ['engine.mode="per-rank"']))
        assert len(a.extra["plan"].simulated) == 64
        assert a.step_time_s == pytest.approx(b.step_time_s, rel=1e-12) and a.step_time_s > plain.step_time_s
        for part in a.breakdown:
            assert a.breakdown[part] == pytest.approx(b.breakdown[part], rel=1e-9, abs=1e-12), part
