"""Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1) against hand counts
from DeepSeek-V3's released config: hidden 7168, 128 heads, q_lora_rank 1536,
kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128."""

from __future__ import annotations

import dataclasses

import pytest

from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.models import attention_linears, model_config, require_model
from simtrain.scenario.stack import Stack
from simtrain.hardware.devices import get_device
from simtrain.workload.flops import stats
from simtrain.workload.memory import layer_activation_bytes
from simtrain.workload.ops import layer_ops
from tests.test_bad_files import assert_one_line_error

H, HEADS, QL, KVL, NOPE, ROPE, V = 7168, 128, 1536, 512, 128, 64, 128
# q_a, q_b, kv_a (with the shared rope key), kv_b (keys' nope part and values), o
ATTN_WEIGHTS = H * QL + QL * HEADS * (NOPE + ROPE) + H * (KVL + ROPE) + KVL * HEADS * (NOPE + V) + HEADS * V * H


def test_attention_weights_by_hand() -> None:
    m = require_model("deepseek-v3")
    assert ATTN_WEIGHTS == 187_105_280
    assert sum(i * o for _, i, o, _ in attention_linears(m)) == ATTN_WEIGHTS
    assert [n for n, *_ in attention_linears(m)] == ["q down", "q up", "kv down", "kv up", "out proj"]
    assert m.head_dim == NOPE + ROPE  # the width the attention kernel scores with


def test_attention_flops_per_token_by_hand() -> None:
    # PaLM's 12 L H Q T with H*Q = heads * (d_qk + d_v) / 2: QK^T 2*T*heads*192 and AV
    # 2*T*heads*128 forward per token and layer, x3 for the backward
    m = require_model("deepseek-v3")
    dense = stats(dataclasses.replace(m, kv_lora_rank=0, q_lora_rank=0, qk_nope_head_dim=0, qk_rope_head_dim=0,
                                      v_head_dim=0, head_dim=NOPE + ROPE), 4096)
    s = stats(m, 4096)
    # the same model with plain 192-dim attention differs by its attention weights and by
    # AV's 128 instead of 192 dims
    plain_weights = 4 * H * HEADS * (NOPE + ROPE)
    expected = dense.model_flops_per_token + 6 * 61 * (ATTN_WEIGHTS - plain_weights) \
        + 6 * 61 * 4096 * HEADS * (V - (NOPE + ROPE))
    assert s.model_flops_per_token == pytest.approx(expected, rel=1e-12)


def test_layer_kernels_by_hand() -> None:
    m = require_model("deepseek-v3")
    par = ParallelConfig(micro_batch=1)
    seq = 4096
    ops = layer_ops(m, par, get_device("H800-SXM"), Stack(), seq)
    fwd = {o.name: o for o in ops if o.phase == "fwd"}
    attn_gemms = sum(fwd[n].flops for n in ("q down", "q up", "kv down", "kv up", "out proj"))
    assert attn_gemms == pytest.approx(2 * seq * ATTN_WEIGHTS, rel=1e-12)
    # causal attention core: half of QK^T + AV over every query x key
    assert fwd["attention"].flops == pytest.approx(0.5 * 2 * seq * seq * HEADS * (NOPE + ROPE + V), rel=1e-12)
    assert "q norm" in fwd and "kv norm" in fwd


def test_activation_bytes_by_hand() -> None:
    m = require_model("deepseek-v3")
    no_mlp = dataclasses.replace(m, intermediate_size=0, num_experts=0, num_experts_per_tok=0, moe_intermediate_size=0,
                                 num_shared_experts=0, shared_expert_intermediate_size=0, first_k_dense_replace=0,
                                 n_group=0, topk_group=0)
    per_token = layer_activation_bytes(no_mlp, 4096, 1) / 4096
    # 2-byte tensors kept: norm inputs and GEMM inputs of the block (8h), Q 192 + K 192 +
    # V 128 + O-projection input 128 per head, the bottlenecks: q_a output and its norm's
    # output (2 x 1536), kv_a output (512 + 64), its norm's output (512); fp32 LSE per head
    expected = 2 * (4 * H + HEADS * (192 + 192 + 128 + 128) + 2 * QL + (KVL + ROPE) + KVL) + 4 * HEADS
    assert per_token == pytest.approx(expected, rel=1e-12)


def test_hf_config_keeps_mla(tmp_path) -> None:
    import json

    cfg = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "hidden_size": 5120,
           "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_hidden_layers": 60, "num_attention_heads": 128,
           "num_key_value_heads": 128, "n_shared_experts": 2, "n_routed_experts": 160, "num_experts_per_tok": 6,
           "first_k_dense_replace": 1, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
           "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 102400, "hidden_act": "silu", "rms_norm_eps": 1e-6}
    p = tmp_path / "DeepSeek-V2" / "config.json"
    p.parent.mkdir()
    p.write_text(json.dumps(cfg))
    m = model_config({"hf_config": str(p)})
    assert (m.q_lora_rank, m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim) == (1536, 512, 128, 64, 128)
    # DeepSeek-V2 report (arXiv:2405.04434): 236B total, 21B activated
    s = stats(m, 4096)
    assert s.params == pytest.approx(236e9, rel=0.01) and s.active_params == pytest.approx(21e9, rel=0.05)


@pytest.mark.parametrize("key,value,words", [
    ("qk_rope_head_dim", 64, "model.kv_lora_rank is 0"),
    ("kv_lora_rank", 512, "model.qk_nope_head_dim"),
])
def test_bad_mla_keys_are_one_line(tmp_path, capsys, key: str, value: int, words: str) -> None:
    p = tmp_path / "s.toml"
    p.write_text(f'[model]\nname = "llama3-8b"\nnum_key_value_heads = 32\n{key} = {value}\n'
                 '[cluster]\ntopology = "dgx-h100"\ngpus = 8\n[training]\nseq_len = 4096\nglobal_batch = 8\n')
    assert_one_line_error(["run", str(p)], capsys, words)


def test_multi_token_prediction_adds_a_layer_a_projection_and_the_head_to_the_last_stage() -> None:
    # DeepSeek-V3 §2.2: one MTP module = projection M (2h -> h), one transformer layer and the
    # shared output head again; compute and memory on the last stage, not model FLOPs
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.config import load_scenario
    from simtrain.workload.compute import gemm_time

    s = load_scenario("deepseek-v3-2048-h800")
    assert s.model.num_nextn_predict_layers == 1
    with_mtp, without = make_plan(s), make_plan(load_scenario(s, ["model.num_nextn_predict_layers=0"]))
    last = [i for i, st in enumerate(with_mtp.stages) if st.head is not None]
    for i in last:
        a, b = with_mtp.stages[i], without.stages[i]
        lc, t = a.layer, 4096
        proj = gemm_time(with_mtp.device, t, 7168, 2 * 7168)
        assert a.head.fwd - b.head.fwd == pytest.approx(sum(lc.fwd) + proj + b.head.fwd, rel=1e-9)
        assert a.head.model_flops == b.head.model_flops
        assert a.params > b.params
    assert sum(st.model_flops for st in with_mtp.stages) == sum(st.model_flops for st in without.stages)
