"""Uneven pipeline splits: `parallel.stage_layers` and the balanced default."""

import dataclasses

import pytest

from simtrain.analysis.metrics import summarize
from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.layout import balanced, split_layers
from simtrain.workload.costs import LayerCost
from tests.test_bad_files import assert_one_line_error


def test_balanced_split_puts_the_shortfall_on_the_end_stages():
    # hand-worked: 60 = 8*7 + 4, so four stages hold 7 (first, last, second, second-to-last)
    assert balanced(60, 8) == [7, 7, 8, 8, 8, 8, 7, 7]
    assert balanced(10, 4) == [2, 3, 3, 2]
    assert balanced(64, 8) == [8] * 8
    # 126 layers on PP16 x VP8 = 128 virtual stages: Llama 3's own layout (empty ends)
    assert split_layers(126, 128) == [0] + [1] * 126 + [0] == split_layers(126, 128, 0, 0)
    # pinned ends, the rest balanced: 100 - 2*5 = 90 over 14 stages = 6*14 + 6
    out = split_layers(100, 16, 5, 5)
    assert out[0] == out[-1] == 5 and sum(out) == 100 and sorted(set(out[1:-1])) == [6, 7]


def _uniform(plan, f: float, b: float):
    lc = LayerCost((f / 2, f / 2), (b / 2, b / 2), 0.0, 0.0, 0.0, 1.0, 0.0)
    stages = tuple(dataclasses.replace(st, layer=lc, embed=None, head=None) for st in plan.stages)
    return dataclasses.replace(plan, stages=stages, optimizer_s={r: 0.0 for r in range(plan.layout.pp)})


def _sixty(schedule: str, m: int, extra=()):
    return load_scenario("llama3-405b-8k", [
        "cluster.gpus=0", "parallel.pp=8", "parallel.dp=1", "parallel.tp=1", "parallel.vp=1", 'model.name="llama3-8b"',
        "model.num_hidden_layers=60", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
        f"training.global_batch={m}", "parallel.zero=0", 'engine.comm="free"', f'schedule.name="{schedule}"', *extra])


@pytest.mark.parametrize("m", [1, 3, 8, 16])
@pytest.mark.parametrize("split", [None, (6, 8, 8, 8, 8, 8, 8, 6), (1, 9, 9, 9, 9, 9, 9, 5)])
def test_sixty_layers_on_eight_stages_gpipe_closed_form(m, split):
    """GPipe is a flow shop of m identical jobs: each pass takes sum_i t_i + (m - 1) max_i t_i
    (the slowest stage's work for every micro-batch plus the others' fill and drain), so with
    f, b per layer the step is (L + (m - 1) n_max) (f + b)."""
    extra = [f"parallel.stage_layers={list(split)}"] if split else []
    plan = _uniform(make_plan(_sixty("gpipe", m, extra)), f=1.0, b=2.0)
    layers = [st.layers for st in plan.stages]
    assert sum(layers) == 60 and layers == list(split or [7, 7, 8, 8, 8, 8, 7, 7])
    step = summarize(plan, Engine(plan).run()).step_time_s
    assert step == pytest.approx((60 + (m - 1) * max(layers)) * 3.0, rel=1e-12)


def test_sixty_layers_on_eight_stages_simulates_with_real_costs():
    from simtrain.analysis.run import simulate

    s = load_scenario("llama3-405b-8k", [
        'model.name="llama3-8b"', "model.num_hidden_layers=60", "cluster.gpus=64", "parallel.tp=8", "parallel.pp=8",
        "parallel.dp=1", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.first_stage_layers=-1",
        "parallel.last_stage_layers=-1", "training.global_batch=16", "training.seq_len=2048"])
    r = simulate(s)
    assert [st.layers for st in r.extra["plan"].stages] == [7, 7, 8, 8, 8, 8, 7, 7]
    # every layer's model FLOPs are counted once: the plan's stages add up to the model
    plan = r.extra["plan"]
    assert sum(st.model_flops for st in plan.stages) * 8 == pytest.approx(
        plan.model.model_flops_per_token * s.training.seq_len, rel=1e-9)
    assert 0 < r.mfu < 1


def test_sixteen_stages_for_126_layers_is_llama3s_split_by_default():
    s = load_scenario("llama3-405b-8k", ["parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1"])
    assert [st.layers for st in make_plan(s).stages] == [0] + [1] * 126 + [0]


@pytest.mark.parametrize("value,fragments", [
    ("[7,7,8,8,8,8,7]", ("parallel.stage_layers", "7 entries for pp*vp = 8")),
    ("[7,7,8,8,8,8,7,8]", ("parallel.stage_layers", "adds up to 61 layers, not the model's 60", "sum to 60")),
    ("[9,7,8,8,8,8,-1,13]", ("parallel.stage_layers[6] = -1",)),
    ("[8,7,8,0,8,8,8,13]", ("parallel.stage_layers[3] = 0", "at least one layer")),
])
def test_bad_stage_layers_are_one_line(value, fragments, capsys):
    assert_one_line_error(["run", "--set", 'model.name="llama3-8b"', "--set", "model.num_hidden_layers=60",
                           "--set", "cluster.gpus=64", "--set", "parallel.tp=8", "--set", "parallel.pp=8",
                           "--set", "parallel.dp=1", "--set", "parallel.vp=1", "--set", 'schedule.name="1f1b"',
                           "--set", "parallel.first_stage_layers=-1", "--set", "parallel.last_stage_layers=-1",
                           "--set", f"parallel.stage_layers={value}"], capsys, *fragments)


def test_stage_layers_with_pinned_ends_and_too_many_stages_are_one_line(capsys):
    base = ["run", "--set", 'model.name="llama3-8b"', "--set", "model.num_hidden_layers=6", "--set", "cluster.gpus=0",
            "--set", "parallel.tp=8", "--set", "parallel.dp=1", "--set", "parallel.vp=1", "--set", 'schedule.name="1f1b"']
    assert_one_line_error(base + ["--set", "parallel.pp=2", "--set", "parallel.stage_layers=[3,3]"], capsys,
                          "parallel.stage_layers", "first_stage_layers/last_stage_layers")
    # 6 layers on 8 stages leave only the two end stages empty (allowed); 5 would empty a middle one
    assert_one_line_error(base + ["--set", "parallel.pp=8", "--set", "parallel.first_stage_layers=-1",
                                  "--set", "parallel.last_stage_layers=-1", "--set", "model.num_hidden_layers=5"], capsys,
                          "more virtual stages than the 5 layers can fill", "use fewer pipeline stages")


def test_a_pinned_end_stage_that_starves_the_others_names_the_pin(capsys):
    # 24 layers, PP2: first_stage_layers = 24 leaves the last stage none; at most 23
    base = ["run", "megatron-sc21-gpt-1.7b", "--no-progress", "--set", "parallel.pp=2", "--set", "parallel.dp=16"]
    assert_one_line_error(base + ["--set", "parallel.first_stage_layers=24"], capsys,
                          "parallel.first_stage_layers = 24", "use at most 23")
    # PP4 with 21 + 2 pinned: 1 layer for 2 middle stages; first can take at most 24 - 2 - 2 = 20
    assert_one_line_error(["run", "megatron-sc21-gpt-1.7b", "--no-progress", "--set", "parallel.pp=4", "--set",
                           "parallel.dp=8", "--set", "parallel.first_stage_layers=21", "--set",
                           "parallel.last_stage_layers=2"], capsys, "parallel.first_stage_layers = 21", "use at most 20")
