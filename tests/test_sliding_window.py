"""Sliding-window attention (Hugging Face `sliding_window`, Mistral): past the window each
query attends to w keys, so the attention work and the model FLOPs shrink; at or below the
window nothing changes."""

import json

import pytest

from simtrain.analysis.run import simulate
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.models import model_config
from simtrain.workload.flops import attended_length, stats
from tests.test_inputs import MISTRAL_7B, write

MISTRAL_32K = ["cluster.gpus=8", "parallel.tp=8", "parallel.pp=1", "parallel.dp=1", "parallel.vp=1", "parallel.cp=1",
               "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", 'schedule.name="1f1b"',
               "training.seq_len=32768", "training.global_batch=1"]


def mistral(tmp_path, **changes):
    return write(tmp_path, {**MISTRAL_7B, **changes}, "m" + "".join(f"{k}{v}" for k, v in changes.items()))


def test_mistral_config_gives_its_window(tmp_path):
    assert model_config({"hf_config": mistral(tmp_path)}).sliding_window == 4096
    assert model_config({"hf_config": mistral(tmp_path, sliding_window=None)}).sliding_window == 0


def test_model_flops_count_the_window_by_hand(tmp_path):
    """Mistral 7B at 32K tokens: causal attention inside a 4,096-token window is
    sum_i min(i, w) ~ s w - w^2/2 query-key pairs, i.e. T = 2w - w^2/s = 8,192 - 512 = 7,680
    in PaLM's 12 L H Q T term (T = s without the window)."""
    m = model_config({"hf_config": mistral(tmp_path)})
    full = model_config({"hf_config": mistral(tmp_path, sliding_window=None)})
    L, q, s = 32, 32 * 128, 32768
    assert attended_length(s, 0, 4096) == 7680.0
    diff = stats(full, s).model_flops_per_token - stats(m, s).model_flops_per_token
    assert diff == pytest.approx(12 * L * q * (s - 7680), rel=1e-12)
    assert stats(m, 4096).model_flops_per_token == stats(full, 4096).model_flops_per_token  # within the window
    assert stats(m, 2048).model_flops_per_token == stats(full, 2048).model_flops_per_token
    assert "sliding window" in stats(m, s).formula


def test_the_attention_kernel_does_the_windowed_work(tmp_path):
    """Per layer and micro-batch on one TP rank (4 of 32 heads), the model FLOPs drop by
    3 x 4 x s x (s - T) x head_dim x heads (QK^T and AV, forward and twice backward), and the
    kernel's time by about the executed work, (s w - w^2/2) / (s^2/2) = 0.234."""
    win = make_plan(load_scenario("llama3-405b-8k", MISTRAL_32K + [f'model.hf_config="{mistral(tmp_path)}"']))
    full = make_plan(load_scenario("llama3-405b-8k", MISTRAL_32K + [f'model.hf_config="{mistral(tmp_path, sliding_window=None)}"']))
    s, hd, heads = 32768, 128, 32 // 8
    a, b = win.stages[0].layer, full.stages[0].layer
    assert b.model_flops - a.model_flops == pytest.approx(3 * 4 * s * (s - 7680) * hd * heads, rel=1e-12)
    executed = (s * 4096 - 4096 ** 2 / 2) / (s * s / 2)
    assert a.attn_fwd / b.attn_fwd == pytest.approx(executed, rel=0.15)  # the kernel's efficiency varies with length


def test_a_window_speeds_up_long_sequences_only(tmp_path):
    windowed = simulate(load_scenario("llama3-405b-8k", MISTRAL_32K + [f'model.hf_config="{mistral(tmp_path)}"']))
    full = simulate(load_scenario("llama3-405b-8k", MISTRAL_32K + [f'model.hf_config="{mistral(tmp_path, sliding_window=None)}"']))
    assert windowed.step_time_s < full.step_time_s
    short = MISTRAL_32K[:-2] + ["training.seq_len=4096", "training.global_batch=8"]
    a = simulate(load_scenario("llama3-405b-8k", short + [f'model.hf_config="{mistral(tmp_path)}"']))
    b = simulate(load_scenario("llama3-405b-8k", short + [f'model.hf_config="{mistral(tmp_path, sliding_window=None)}"']))
    assert a.step_time_s == b.step_time_s and a.mfu == b.mfu


def test_the_window_can_be_set_inline_and_shows_in_json(capsys):
    from simtrain.cli import main

    assert main(["run", *sum((["--set", o] for o in MISTRAL_32K), []), "--set", 'model.name="llama3-8b"',
                 "--set", "model.sliding_window=4096", "--json"]) == 0
    assert "sliding window" in json.loads(capsys.readouterr().out)["flops_formula"]


def test_qwen2_windows_are_used_only_when_switched_on(tmp_path):
    qwen = {**MISTRAL_7B, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "sliding_window": 4096,
            "max_window_layers": 28}
    assert model_config({"hf_config": write(tmp_path, {**qwen, "use_sliding_window": False}, "q1")}).sliding_window == 0
    with pytest.raises(SimtrainError, match="max_window_layers = 28 of 32 layers") as e:
        model_config({"hf_config": write(tmp_path, {**qwen, "use_sliding_window": True}, "q2")})
    assert "\n" not in str(e.value)
    all_full = {**qwen, "use_sliding_window": True, "max_window_layers": 32}
    assert model_config({"hf_config": write(tmp_path, all_full, "q3")}).sliding_window == 0
    with pytest.raises(SimtrainError, match="sliding_window = 'big' is not a positive whole number"):
        model_config({"hf_config": write(tmp_path, {**MISTRAL_7B, "sliding_window": "big"}, "q4")})
