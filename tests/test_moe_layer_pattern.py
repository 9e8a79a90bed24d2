"""Mixture-of-experts on some layers only: Llama 4 Maverick (experts on every second layer),
Qwen2-MoE's decoder_sparse_step / mlp_only_layers, DeepSeek's moe_layer_freq. Parameter
counts are checked against hand counts written out here and against the totals the model
makers publish (Meta: Llama 4 Maverick 17B active of 400B, Scout 17B of 109B with its
vision encoder; Qwen: Qwen3-30B-A3B 3.3B active of 30.5B)."""

from __future__ import annotations

import json

import pytest

from simtrain import load_scenario
from simtrain.engine.plan import make_plan
from simtrain.scenario.models import model_config, moe_layer_flags, moe_layers
from simtrain.workload.flops import stats
from tests.test_bad_files import assert_one_line_error

# Llama-4-Maverick-17B-128E's config.json (text_config only the keys that matter here)
MAVERICK = {
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
    "text_config": {"model_type": "llama4_text", "num_hidden_layers": 48, "hidden_size": 5120,
                    "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_attention_heads": 40,
                    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 202048, "num_local_experts": 128,
                    "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "hidden_act": "silu",
                    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "attention_chunk_size": 8192},
}
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_attention_heads": 32, "num_key_value_heads": 4,
    "head_dim": 128, "vocab_size": 151936, "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "hidden_act": "silu", "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
}


def _hf(tmp_path, cfg: dict, name: str = "config.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return str(p)


def test_llama4_maverick_counts_as_meta_publishes(tmp_path):
    m = model_config({"hf_config": _hf(tmp_path, MAVERICK)})
    flags = moe_layer_flags(m)
    assert flags == tuple(i % 2 == 1 for i in range(48)) and moe_layers(m) == 24  # layers 1, 3, ..., 47
    assert (m.moe_intermediate_size, m.intermediate_size, m.num_shared_experts) == (8192, 16384, 1)
    h, v = 5120, 202048
    attn = h * 40 * 128 + 2 * h * 8 * 128 + 40 * 128 * h  # q, k, v, o
    expert = 3 * h * 8192  # gate, up, down
    moe_layer = attn + 128 * expert + expert + h * 128  # routed + shared + router
    dense_layer = attn + 3 * h * 16384
    emb = 2 * v * h  # untied input and output embeddings
    total = 24 * moe_layer + 24 * dense_layer + emb
    active = 24 * (attn + 2 * expert + h * 128) + 24 * dense_layer + emb
    st = stats(m, 8192)
    # norms (2 h per layer + h) are all the hand count leaves out
    assert st.params == pytest.approx(total, rel=1e-4) and st.active_params == pytest.approx(active, rel=1e-4)
    assert st.params == pytest.approx(400e9, rel=0.01) and st.active_params == pytest.approx(17e9, rel=0.02)


def test_qwen3_moe_counts_as_qwen_publishes(tmp_path):
    m = model_config({"hf_config": _hf(tmp_path, QWEN3_30B_A3B)})
    assert moe_layers(m) == 48 and m.head_dim == 128 and not m.mlp_only_layers
    st = stats(m, 4096)
    assert st.params == pytest.approx(30.5e9, rel=0.01) and st.active_params == pytest.approx(3.3e9, rel=0.02)


def test_sparse_step_and_dense_layers_place_the_experts(tmp_path):
    cfg = dict(QWEN3_30B_A3B, num_hidden_layers=8, decoder_sparse_step=2, mlp_only_layers=[3])
    m = model_config({"hf_config": _hf(tmp_path, cfg)})
    # (i + 1) % 2 == 0 -> 1, 3, 5, 7; layer 3 listed dense
    assert moe_layer_flags(m) == (False, True, False, False, False, True, False, True)
    # DeepSeek's moe_layer_freq counts from the dense layers first (i - k) % freq == 0
    ds = dict(QWEN3_30B_A3B, num_hidden_layers=8, first_k_dense_replace=2, moe_layer_freq=3)
    ds.pop("decoder_sparse_step")
    m = model_config({"hf_config": _hf(tmp_path, ds, "ds.json")})
    assert moe_layer_flags(m) == (False, False, True, False, False, True, False, False)
    # dense layers' MLP is intermediate_size wide, MoE layers' experts moe_intermediate_size
    st, all_moe = stats(m, 4096), stats(model_config({"hf_config": _hf(tmp_path, dict(ds, moe_layer_freq=1), "a.json")}), 4096)
    h = 2048
    dense_mlp, moe_mlp = 3 * h * 6144, 128 * 3 * h * 768 + h * 128
    assert all_moe.params - st.params == pytest.approx(4 * (moe_mlp - dense_mlp), rel=1e-9)  # layers 3, 4, 6, 7


def test_stages_get_their_dense_layers_and_the_step_simulates():
    sets = ['model.name="mixtral-8x7b"', "model.moe_layer_step=2", "cluster.gpus=64", "parallel.tp=2", "parallel.pp=4",
            "parallel.dp=8", "parallel.ep=8", "parallel.vp=1", 'schedule.name="1f1b"', "training.global_batch=64",
            "training.seq_len=4096", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1"]
    plan = make_plan(load_scenario(None, sets))
    # 32 layers, 8 per stage, experts on layers 1, 3, ...: four dense and four MoE per stage
    assert [st.dense_layers for st in plan.stages] == [4, 4, 4, 4] and all(st.layers == 8 for st in plan.stages)
    from simtrain.analysis.run import simulate

    every = simulate(load_scenario(None, [s for s in sets if "moe_layer_step" not in s]))
    half = simulate(load_scenario(None, sets))
    assert half.step_time_s < every.step_time_s  # half the experts' work and all-to-alls
    assert half.breakdown["ep"] < every.breakdown["ep"]


@pytest.mark.parametrize("override, message", [
    ("model.moe_layer_step=0", "model.moe_layer_step = 0: must be between 1 and num_hidden_layers"),
    ("model.mlp_only_layers=[40]", "model.mlp_only_layers = [40]: layer 40 is not a layer index"),
    ("model.moe_layer_step=64", "model.moe_layer_step = 64: must be between 1 and num_hidden_layers"),
])
def test_bad_moe_layer_keys_are_one_line(capsys, override, message):
    assert_one_line_error(["run", "--set", 'model.name="mixtral-8x7b"', "--set", override], capsys, message)


def test_moe_layer_keys_need_experts(capsys):
    assert_one_line_error(["run", "--set", "model.moe_layer_step=2"], capsys,
                          "model.moe_layer_step = 2: is a mixture-of-experts key but model.num_experts is 0")
