"""Parameter counts and FLOPs against numbers worked outside the code."""

import pytest

from simtrain.scenario.models import CATALOG, require_model
from simtrain.workload.flops import megatron_flops_per_token, stats


def test_llama3_70b_parameter_count_matches_seed_004():
    # seed 004 (How to Scale Your Model, "Training LLaMA 3 on TPUs"): 56.3e9 FFW + 2.1e9 vocab
    # + 12e9 attention = 70.4e9 (the seed rounds its terms; norms add 0.0013e9)
    p = stats(require_model("llama3-70b"), 8192).params
    assert p == pytest.approx(70.4e9, rel=0.005)


@pytest.mark.parametrize("name,nominal", [("llama3-8b", 8e9), ("llama3-405b", 405e9), ("llama2-70b", 70e9)])
def test_llama_sizes_within_2_percent_of_their_names(name, nominal):
    assert stats(require_model(name), 4096).params == pytest.approx(nominal, rel=0.02)


def test_megatron_gpt_parameter_formula():
    # Narayanan et al. 2021 eq. (2): P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h))
    m = require_model("gpt-145b")
    L, h, V, s = 80, 12288, 51200, 2048
    expected = 12 * L * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * L * h))
    # the formula omits the final layer norm (2h)
    assert stats(m, 2048).params == pytest.approx(expected + 2 * h, rel=1e-12)


def test_palm_model_flops_per_token_by_hand():
    # Llama 2 7B: N_matmul = 32 layers * (4*4096^2 + 3*4096*11008) + 32000*4096 (output layer)
    L, h, f, V, T = 32, 4096, 11008, 32000, 4096
    n_mm = L * (4 * h * h + 3 * h * f) + V * h
    expected = 6 * n_mm + 12 * L * h * T
    assert stats(require_model("llama2-7b"), T).model_flops_per_token == pytest.approx(expected, rel=1e-12)


def test_megatron_flops_counts_recompute_on_top_of_model_flops():
    # 96 L h^2 (1 + s/6h + V/16Lh) per token = model FLOPs (72Lh^2 + 12Lhs + 6hV) + one forward (24Lh^2 + 4Lhs)
    m = require_model("gpt-18b")
    L, h, V, s = 40, 6144, 51200, 2048
    assert megatron_flops_per_token(m, s) == pytest.approx(96 * L * h * h + 16 * L * h * s + 6 * h * V, rel=1e-12)


def test_catalog_has_the_required_families():
    for name in ["llama3-8b", "llama3-70b", "llama3-405b", "llama2-7b", "llama2-13b", "llama2-70b", "gpt3-175b", "gpt-1.7b", "gpt-1t"]:
        assert name in CATALOG


def test_document_mask_counts_attention_over_the_document() -> None:
    # PaLM's 6N + 12*L*H*Q*T with T the tokens a token attends: its document under a mask
    m = require_model("llama3-405b")
    full, doc = stats(m, 131072), stats(m, 131072, document_length=8192)
    L, q = m.num_hidden_layers, m.num_attention_heads * m.head_dim
    assert full.model_flops_per_token - doc.model_flops_per_token == pytest.approx(12 * L * q * (131072 - 8192), rel=1e-12)
    assert stats(m, 8192, document_length=8192).model_flops_per_token == stats(m, 8192).model_flops_per_token
