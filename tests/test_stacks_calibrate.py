"""Software stacks as data, and fitting one to measured runs (simtrain calibrate)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from simtrain.analysis.calibrate import fit_fraction, fit_stack, scale_warning
from simtrain.analysis.run import simulate
from simtrain.cli import main
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.stack import stack_names
from tests.test_bad_files import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent
SMALL = ['model.name="llama3-8b"', "cluster.gpus=8", "parallel.tp=1", "parallel.pp=1", "parallel.dp=8",
         "parallel.vp=1", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
         "training.global_batch=16", "training.seq_len=2048", 'schedule.name="1f1b"']


def test_every_shipped_scenario_names_a_shipped_stack():
    names = set(stack_names())
    assert {"megatron-core", "megatron-lm-2021", "llama3-meta", "llm-foundry", "torchtitan"} <= names
    for p in (ROOT / "scenarios").glob("*.toml"):
        stack = tomllib.loads(p.read_text())["cluster"].get("stack")
        assert stack in names, p.name


def test_stack_defaults_yield_to_the_scenario_and_set():
    # megatron-core's [defaults] ask for cuDNN attention; the scenario or --set still decide
    s = load_scenario(None, SMALL + ['cluster.stack="megatron-core"'])
    assert s.parallel.attention_kernel == "cudnn" and s.engine.overlap_tp_comm is True
    s = load_scenario(None, SMALL + ['cluster.stack="megatron-core"', 'parallel.attention_kernel="fa2"'])
    assert s.parallel.attention_kernel == "fa2"
    s = load_scenario(None, SMALL + ['cluster.stack="megatron-lm-2021"'])
    assert s.parallel.flash_attention is False and s.engine.async_p2p is False


def test_unfused_kernels_cost_time_and_memory():
    # eager RMSNorm, rotary and SwiGLU instead of fused kernels: slower (measured 7.3x for
    # the norm alone) and more activation memory (fp32 copies kept for the backward)
    from simtrain.engine.plan import make_plan
    from simtrain.workload.memory import estimate

    fused = SMALL + ['cluster.stack="megatron-core"']
    unfused = fused + ['stack.norm="unfused"', 'stack.rope="unfused"', 'stack.activation="unfused"']
    assert simulate(load_scenario(None, unfused)).step_time_s > 1.03 * simulate(load_scenario(None, fused)).step_time_s
    assert estimate(make_plan(load_scenario(None, unfused))).peak_bytes > estimate(make_plan(load_scenario(None, fused))).peak_bytes


def test_launch_bound_passes_take_the_host_time():
    # a tiny model with tiny micro-batches: the host issues ~7 us per kernel, slower than
    # the GPU runs them; the forward then takes kernels x launch time, not the GPU sum
    from simtrain.engine.plan import make_plan
    from simtrain.workload.ops import kernels, layer_ops

    tiny = ['model.num_hidden_layers=4', "model.hidden_size=256", "model.intermediate_size=1024",
            "model.num_attention_heads=4", "model.num_key_value_heads=4", "model.vocab_size=1024", 'model.name=""',
            "cluster.gpus=1", "parallel.dp=1", "training.global_batch=1", "training.seq_len=128"]
    s = load_scenario(None, SMALL + tiny + ["stack.launch_us=50"])
    plan = make_plan(s)
    lc = plan.stages[0].layer
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, 128)
    host = kernels(ops, "fwd") * 50e-6
    assert lc.launch_factor[0] > 1
    assert sum(lc.fwd) == pytest.approx(host, rel=1e-9)


def test_bad_stack_input_is_one_line(capsys, tmp_path):
    assert_one_line_error(["run", "--set", 'cluster.stack="megatron-cor"'], capsys, "cluster.stack = 'megatron-cor': no such stack file")
    assert_one_line_error(["run", "--set", "stack.launch_uss=3"], capsys, "unknown key stack.launch_uss", "did you mean 'launch_us'")
    assert_one_line_error(["run", "--set", 'stack.norm="fast"'], capsys, "stack.norm = 'fast': not a valid choice", "fused, unfused")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nnorms = "fused"\n')
    assert_one_line_error(["run", "--set", f'cluster.stack="{bad}"'], capsys, "unknown key norms", "did you mean 'norm'")


def test_one_run_fits_the_fraction_that_reproduces_it():
    # a "measured" step made by the simulator itself at a known fraction: the fit recovers it
    truth = simulate(load_scenario(None, SMALL + ["stack.sustained_fraction=0.8"])).step_time_s
    fit = fit_fraction(lambda ov: load_scenario(None, SMALL + list(ov)), truth, start=1.0)
    assert fit.fraction == pytest.approx(0.8, rel=2e-3) and abs(fit.residual) < 1e-3
    assert fit.simulations <= 6


@pytest.mark.parametrize("truth_fraction, warned", [(0.85, False), (0.6, True)])
def test_a_fit_far_from_the_stack_says_the_gap_is_not_in_compute(truth_fraction, warned):
    # the default scenario's stack (llama3-meta) starts at 0.7946: 0.85 is x1.07 of it, 0.6
    # is x0.755, beyond PLAUSIBLE_SCALE = 1.25 (below 1/1.25 = 0.8)
    truth = simulate(load_scenario(None, SMALL + [f"stack.sustained_fraction={truth_fraction}"])).step_time_s
    start = load_scenario(None, SMALL).stack.sustained_fraction
    fit = fit_stack([lambda ov: load_scenario(None, SMALL + list(ov))], [truth], start)
    assert fit.fraction == pytest.approx(truth_fraction, rel=2e-3)
    assert any("not in compute" in w for w in fit.warnings) == warned
    assert scale_warning(1.25, 1.0) == scale_warning(0.8, 1.0) == "" and scale_warning(1.26, 1.0)


def test_calibrate_command_writes_a_stack_that_reproduces_the_run(tmp_path, capsys):
    truth = simulate(load_scenario(None, SMALL + ["stack.sustained_fraction=0.7"])).step_time_s
    out = tmp_path / "mine.toml"
    args = ["calibrate", "--step-time", repr(truth), "--out", str(out), "--json"]
    for o in SMALL:
        args += ["--set", o]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["sustained_fraction"] == pytest.approx(0.7, rel=2e-3)
    again = simulate(load_scenario(None, SMALL + [f'cluster.stack="{out}"'])).step_time_s
    assert again == pytest.approx(truth, rel=2e-3)


def test_several_runs_fit_launch_cost_or_say_they_cannot(tmp_path, capsys):
    # two layouts of one GEMM-bound model respond to the launch cost alike: not constrained
    runs = tmp_path / "runs.csv"
    steps = [simulate(load_scenario(None, SMALL + [f"training.global_batch={b}", "stack.sustained_fraction=0.8"])).step_time_s
             for b in (16, 32)]
    runs.write_text("scenario,step_time_s,set\n" + "".join(
        f",{t!r},{';'.join(SMALL)};training.global_batch={b}\n" for t, b in zip(steps, (16, 32))))
    assert main(["calibrate", "--runs", str(runs), "--json"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert res["sustained_fraction"] == pytest.approx(0.8, rel=0.02)
    assert "cannot tell the launch cost apart" in captured.err
    # not constrained: the stack's own launch cost is kept (not the grid point that won by a
    # hair), and the fraction is the one fitted at that launch cost
    stack_launch = load_scenario(None, SMALL).stack.launch_us
    assert res["launch_us"] == stack_launch and res["launch_us_fitted"] is False
    assert "is kept" in captured.err


def test_contradicting_runs_are_refused(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    runs.write_text("scenario,step_time_s,set\nllama3-405b-8k,12.5,\nllama3-405b-8k,20.0,\n")
    assert_one_line_error(["calibrate", "--runs", str(runs)], capsys, "the runs contradict each other")
    assert_one_line_error(["calibrate", "--step-time", "-1"], capsys, "--step-time = -1.0: must be a positive number")
    assert_one_line_error(["calibrate"], capsys, "give either --step-time SECONDS")


def test_stack_fit_on_multiple_runs_flags_contradictions():
    f = lambda ov: load_scenario(None, SMALL + list(ov))  # noqa: E731
    t = simulate(load_scenario(None, SMALL)).step_time_s
    res = fit_stack([f, f], [t, 2 * t])
    assert res.rms_log_error > 0.1 and any("contradict" in w for w in res.warnings)
