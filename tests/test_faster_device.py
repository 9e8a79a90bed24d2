"""A faster device never makes a step slower, unless link contention grew by at least as much,
and then the report names it.

nemotron4-15b on dgx-h200, TP4 PP1 DP4, FSDP (zero 3), gpipe, gradient reduction after the
backward and exposed TP (the case a user reported): raising `stack.sustained_fraction`
0.85 -> 1.0 shrank compute but lengthened the step by a couple of milliseconds. The cause
is real in the model, not an artifact of how flows start or are re-shared: the step is
bounded by the serial FSDP stream (~96% of it); its reduce-scatters run hierarchically,
first over NVLink inside each node, where the exposed TP collectives also run. With
shorter compute the TP collectives come closer together and overlap more of those NVLink
phases, which then share the links max-min fairly (half each) and take longer; the DP
stream grows by more than the compute gaps it used to wait on shrink. With TP traffic off
the network (engine.overlap_tp_comm) or free communication, the step shrinks
monotonically.
"""

import pytest

from simtrain.analysis.report import text_report
from simtrain.analysis.run import simulate
from simtrain.scenario.config import load_scenario

FRACTIONS = (0.75, 0.85, 0.95, 1.0)
NEMOTRON = ['model.name="nemotron4-15b"', 'cluster.topology="dgx-h200"', "cluster.gpus=16", "parallel.tp=4",
            "parallel.pp=1", "parallel.dp=4", "parallel.zero=3", "training.seq_len=1024", "training.global_batch=8",
            'schedule.name="gpipe"', "parallel.overlap_grad_reduce=false", "engine.async_tp_backward=false",
            "parallel.vp=1", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1"]
SMALL_8B = ['model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=2",
            "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
            "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"']


def _contention(r) -> float:
    return sum(v["seconds"] for v in (r.extra["hotspots"].get("contention") or {}).values())


def _sweep(ov: list[str]):
    return [simulate(load_scenario(None, ov + [f"stack.sustained_fraction={f}"])) for f in FRACTIONS]


@pytest.mark.parametrize("ov", [NEMOTRON, SMALL_8B, SMALL_8B + ["parallel.zero=3", 'cluster.topology="example-classic-2to1"']],
                         ids=["nemotron-fsdp-h200", "llama3-8b-pp4", "llama3-8b-fsdp-2to1"])
def test_a_faster_device_never_slows_a_step_more_than_contention_grew(ov):
    runs = _sweep(ov)
    for slow, fast in zip(runs, runs[1:]):
        assert fast.breakdown["compute"] < slow.breakdown["compute"]
        grew = fast.step_time_s - slow.step_time_s
        if grew > 1e-9:  # only contention may explain it, and then by at least as much
            assert _contention(fast) - _contention(slow) >= grew - 1e-9
            assert "contention:" in text_report(fast)


@pytest.mark.parametrize("extra", [['engine.comm="free"'], ["engine.overlap_tp_comm=true"]], ids=["free-comm", "tp-off-network"])
def test_without_the_shared_links_the_step_shrinks_with_a_faster_device(extra):
    runs = _sweep(NEMOTRON + extra)
    steps = [r.step_time_s for r in runs]
    assert steps == sorted(steps, reverse=True), steps


def test_the_reported_case_names_contention_on_nvlink_between_tp_and_dp():
    # (the link contention alone: the SMs NCCL's blocks hold beside the DP collectives,
    # simtrain.engine.smload, slow the compute they overlap and hide the effect in this case)
    # Whether the faster device loses time here depends on where the TP collectives fall
    # against the DP ones (with each block's weight gradient run before its collective, as
    # Megatron-LM does, the reported slowdown no longer shows at these fractions): what must
    # hold is the contention named, and any slowdown covered by its growth
    blocks = ["stack.nccl_channels_intra_node=0", "stack.nccl_channels_inter_node=0"]
    slow, fast = (simulate(load_scenario(None, NEMOTRON + blocks + [f"stack.sustained_fraction={f}"])) for f in (0.75, 1.0))
    lost = fast.extra["hotspots"]["contention"]
    assert lost["dp"]["shared_with"] == ["tp"] and lost["dp"]["link_kinds"] == ["nvlink"]
    assert lost["dp"]["seconds"] > 1e-4
    grew = fast.step_time_s - slow.step_time_s
    assert grew <= 1e-9 or _contention(fast) - _contention(slow) > grew
    text = text_report(fast)
    assert "DP/FSDP" in text and "sharing nvlink with TP" in text
    assert "the step is bound by DP/FSDP traffic" in text  # the report says why a faster device may not help


def test_a_faster_memory_system_never_slows_the_small_pipeline():
    # H200 has H100's FLOP/s with 4.8 instead of 3.35 TB/s of HBM: memory-bound kernels speed up
    h100 = simulate(load_scenario(None, SMALL_8B))
    h200 = simulate(load_scenario(None, SMALL_8B + ['cluster.device="H200"']))
    assert h200.breakdown["compute"] < h100.breakdown["compute"]
    assert h200.step_time_s <= h100.step_time_s + max(0.0, _contention(h200) - _contention(h100))
