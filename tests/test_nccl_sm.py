"""NCCL's thread blocks hold SMs while a data-parallel collective overlaps compute
(simtrain.engine.smload): the step function of blocks held, the work each compute interval
loses, and the engine's runs against bounds worked out from their own comm records."""

from __future__ import annotations

import pytest

from simtrain.analysis.run import simulate
from simtrain.engine.smload import ContendedRecords, SmLoad, owed_seconds
from simtrain.engine.timeline import record
from simtrain.scenario.config import load_scenario, scenario_from_dict


def test_block_seconds_integrates_the_step_function() -> None:
    # 24 blocks over [1, 3], 16 more over [2, 4]: 24 x 1 + 40 x 1 + 16 x 1 = 80 block-seconds on [0, 5]
    load = SmLoad()
    load.change(1.0, 24)
    load.change(2.0, 16)
    load.change(3.0, -24)
    load.change(4.0, -16)
    assert load.held == 0
    assert load.block_seconds(0.0, 5.0) == pytest.approx(80.0, abs=1e-12)
    assert load.block_seconds(0.0, 1.0) == 0.0
    assert load.block_seconds(1.5, 2.5) == pytest.approx(24 * 0.5 + 40 * 0.5, abs=1e-12)
    assert load.block_seconds(3.5, 10.0) == pytest.approx(16 * 0.5, abs=1e-12)
    # a change at the same instant replaces the level rather than adding a zero-length step
    load.change(6.0, 24)
    load.change(6.0, -24)
    assert load.block_seconds(5.0, 7.0) == 0.0


def test_records_add_up_the_compute_seconds_and_nothing_else() -> None:
    recs = ContendedRecords()
    recs.append(record(0, "main", "F", "F0", 0.0, 2.0))
    recs.extend([record(0, "main", "B", "B0", 2.0, 2.5),
                 record(0, "comm", "dp", "all-gather(dp)", 1.0, 2.0),  # the collective's own record: no
                 record(0, "main", "tp", "all-reduce(tp)", 2.5, 3.0),  # a wait, not compute: no
                 record(0, "main", "opt", "optimizer", 3.0, 3.5),  # after the step's collectives: no
                 record(1, "main", "W", "W0", 0.0, 0.25)])
    assert len(recs) == 6
    assert recs.busy == {0: pytest.approx(2.5, rel=1e-12), 1: pytest.approx(0.25, rel=1e-12)}
    # owed full-speed seconds run on the SMs the blocks leave: 24 of an H100's 132 held
    sms = 132
    assert owed_seconds(24 / 132, 24, sms) == pytest.approx(24 / 108, rel=1e-12)
    assert owed_seconds(0.5, 0, sms) == 0.5


def _fsdp(**stack: object):
    """Eight A100s in one node, torch FSDP (ZeRO-3, parameters resharded after the forward):
    every layer's all-gather and reduce-scatter runs beside the compute of its neighbours."""
    return scenario_from_dict({
        "name": "fsdp8",
        "model": {"name": "gpt-1.7b"},
        "cluster": {"topology": "dgx-a100", "stack": "llm-foundry"},
        "parallel": {"tp": 1, "pp": 1, "dp": 8, "micro_batch": 4, "zero": 3, "reshard_after_forward": True},
        "training": {"seq_len": 2048, "global_batch": 64},
        "stack": dict(stack),
    }, name="fsdp8")


def test_fsdp_compute_is_slowed_by_at_most_its_overlap_times_the_blocks_share() -> None:
    free = simulate(_fsdp(nccl_channels_intra_node=0, nccl_channels_inter_node=0))
    held = simulate(_fsdp())  # 24 blocks of the A100's 108 SMs within a node
    assert free.breakdown["nccl_sm"] == 0.0
    lost = held.breakdown["nccl_sm"]
    assert lost > 0
    # the kernels themselves run as long as before: only the extension is new
    assert held.breakdown["compute"] == pytest.approx(free.breakdown["compute"], rel=1e-9)
    # each device loses at most 24/108 of the time its DP stream is busy (blocks held over
    # the whole collective, compute running beside all of it), run at 84 of 108 SMs' speed
    for dev in {r.device for r in held.records}:
        busy = sum(r.end - r.start for r in held.records if r.device == dev and r.stream == "comm" and r.kind == "dp")
        mine = sum(r.end - r.start for r in held.records if r.device == dev and r.kind == "nccl_sm")
        assert 0 < mine <= busy * 24 / (108 - 24) + 1e-12
    # and the step grows by about what was lost (the collectives shift a little with it)
    assert held.step_time_s - free.step_time_s == pytest.approx(lost, rel=0.25)


def test_no_overlap_no_charge() -> None:
    # plain data parallelism with the gradients all-reduced after the backward: nothing overlaps
    s = scenario_from_dict({
        "name": "ddp8",
        "model": {"name": "gpt-1.7b"},
        "cluster": {"topology": "dgx-a100"},
        "parallel": {"tp": 1, "pp": 1, "dp": 8, "micro_batch": 4, "zero": 0, "overlap_grad_reduce": False},
        "training": {"seq_len": 2048, "global_batch": 64},
    }, name="ddp8")
    r = simulate(s)
    assert r.breakdown["dp"] > 0 and r.breakdown["nccl_sm"] == 0.0


def test_bad_channel_count_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from simtrain.cli import main

    assert main(["run", "--set", "stack.nccl_channels_intra_node=-1", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stack.nccl_channels_intra_node" in err[0] and "-1" in err[0]


def test_an_overlapped_expert_all_to_all_holds_the_dispatchers_sms() -> None:
    # Mixtral 8x7B with the 1F1B all-to-all overlap: each exchange of a pair runs beside the
    # other micro-batch's compute; DeepEP's 20 of the H100's 132 SMs held meanwhile
    base = ['schedule.name="interleaved-ep-overlap"', "stack.nccl_channels_intra_node=0",
            "stack.nccl_channels_inter_node=0"]
    none = simulate(load_scenario("mixtral-8x7b-64-h100", base + ["stack.ep_overlap_sms=0"]))
    held = simulate(load_scenario("mixtral-8x7b-64-h100", base + ["stack.ep_overlap_sms=20"]))
    assert none.breakdown["nccl_sm"] == 0.0
    lost = held.breakdown["nccl_sm"]
    assert lost > 0
    assert held.breakdown["compute"] == pytest.approx(none.breakdown["compute"], rel=1e-9)
    # at most every second of compute slowed to 112 of 132 SMs
    assert lost <= (held.breakdown["compute"] + held.breakdown["recompute"]) * 20 / 112


@pytest.mark.parametrize("hidden, c_end, rate, want", [
    # the GEMM slowed to 108/132 of its speed ends at 1 x 132/108 s, before the 2 s collective
    (1.0, 2.0, 108 / 132, (132 / 108, 2.0)),
    # the GEMM outlasts the collective: 1 s beside it at 108/132, the rest at full speed
    (2.0, 1.0, 108 / 132, (2.0 + 24 / 132, 2.0 + 24 / 132)),
    # no blocks held: the GEMM's own 1 s inside the collective's 2, or 3 s with 1 s exposed
    (1.0, 2.0, 1.0, (1.0, 2.0)),
    (3.0, 1.0, 1.0, (3.0, 3.0)),
])
def test_contended_overlap_closed_form(hidden: float, c_end: float, rate: float, want: tuple[float, float]) -> None:
    from simtrain.engine.smload import contended_overlap

    assert contended_overlap(0.0, hidden, c_end, rate) == pytest.approx(want, rel=1e-12)
    # shifted in time: the same durations
    ce, end = contended_overlap(5.0, hidden, 5.0 + c_end, rate)
    assert (ce - 5.0, end - 5.0) == pytest.approx(want, rel=1e-12)


def test_async_tp_backward_pays_for_the_tp_blocks_beside_the_weight_gradient() -> None:
    # Llama 3 row 1's layout at 64 GPUs (TP8 in a node: 24 blocks of 132): each backward
    # reduce-scatter beside the weight gradient of its block's first linear (QKV, MLP up); with the engine's TP times
    # coalesced (one span an action) and piece by piece the same, and none without async TP
    base = ["cluster.gpus=64", "parallel.dp=1", "parallel.pp=8", "parallel.vp=1", 'schedule.name="1f1b"',
            "training.global_batch=16", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
            "model.num_hidden_layers=16"]
    on = simulate(load_scenario("llama3-405b-8k", base))
    off = simulate(load_scenario("llama3-405b-8k", base + ["engine.async_tp_backward=false"]))
    none = simulate(load_scenario("llama3-405b-8k", base + ["stack.nccl_channels_intra_node=0"]))
    assert off.breakdown["nccl_sm"] == 0.0 and none.breakdown["nccl_sm"] == 0.0
    assert on.breakdown["nccl_sm"] > 0
    # the blocks cost at most 24/108 of the weight-gradient seconds they sit beside, and the
    # overlap still beats running the collective after the GEMMs
    wgrad = none.breakdown["compute"] / 3  # (a backward's weight gradient: a third of F + B)
    assert on.breakdown["nccl_sm"] <= wgrad * 24 / 108
    assert none.step_time_s < on.step_time_s < off.step_time_s
