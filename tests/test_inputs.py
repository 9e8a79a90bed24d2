"""Inputs from the ecosystem: Hugging Face config.json and Megatron-LM launch flags."""

import dataclasses
import json

import pytest

from simtrain.cli import main
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.megatron_args import parse
from simtrain.scenario.models import model_config

# Meta-Llama-3-8B/config.json as released (transformers 4.40)
LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
    "use_cache": True, "vocab_size": 128256,
}
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "vocab_size": 32000,
}
PYTHIA_1B = {
    "architectures": ["GPTNeoXForCausalLM"], "hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 8192,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 8,
    "num_hidden_layers": 16, "rotary_pct": 0.25, "tie_word_embeddings": False, "use_parallel_residual": True,
    "vocab_size": 50304,
}
MIXTRAL = {**MISTRAL_7B, "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": 8,
           "num_experts_per_tok": 2}


def write(tmp_path, cfg, folder="Meta-Llama-3-8B"):
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    p = d / "config.json"
    p.write_text(json.dumps(cfg))
    return str(p)


def shape(m):
    return {k: v for k, v in dataclasses.asdict(m).items() if k not in ("name", "hf_config")}


def test_llama3_8b_config_equals_the_catalog_shape(tmp_path):
    m = model_config({"hf_config": write(tmp_path, LLAMA3_8B)})
    assert shape(m) == shape(model_config({"name": "llama3-8b"}))
    assert m.name == "Meta-Llama-3-8B"


def test_hf_config_replaces_a_catalog_model_in_any_scenario(tmp_path):
    path = write(tmp_path, LLAMA3_8B)
    s = load_scenario("llama3-405b-8k", [f'model.hf_config="{path}"'])
    assert s.model.num_hidden_layers == 32 and s.model.hf_config == path


def test_mistral_and_gpt_neox_keys(tmp_path):
    m = model_config({"hf_config": write(tmp_path, MISTRAL_7B, "mistral")})
    assert (m.mlp, m.num_key_value_heads, m.norm, m.head_dim) == ("gated", 8, "rmsnorm", 128)
    p = model_config({"hf_config": write(tmp_path, PYTHIA_1B, "pythia")})
    assert (p.mlp, p.norm, p.bias, p.num_key_value_heads, p.position_embedding) == ("plain", "layernorm", True, 8, "rope")


def test_mixtral_config_is_a_mixture_of_experts(tmp_path):
    # Mistral 7B's shape with 8 experts of its MLP, top-2: Mixtral 8x7B's config.json
    m = model_config({"hf_config": write(tmp_path, MIXTRAL, "mixtral")})
    assert (m.num_experts, m.num_experts_per_tok, m.moe_intermediate_size, m.num_shared_experts) == (8, 2, 14336, 0)


@pytest.mark.parametrize("cfg, key", [
    ({**MIXTRAL, "decoder_sparse_step": 0}, "decoder_sparse_step"),
    ({**MIXTRAL, "interleave_moe_layer_step": -2}, "interleave_moe_layer_step"),
    ({**MIXTRAL, "mlp_only_layers": "3"}, "mlp_only_layers"),
    ({**MIXTRAL, "moe_layer_freq": 0}, "moe_layer_freq"),
    ({**LLAMA3_8B, "architectures": ["MambaForCausalLM"], "model_type": "mamba"}, "architectures"),
    ({**LLAMA3_8B, "architectures": [], "model_type": "mamba"}, "model_type"),
    ({**LLAMA3_8B, "hidden_act": "tanh"}, "hidden_act"),
])
def test_unsupported_configs_fail_with_one_line_naming_the_key(tmp_path, cfg, key):
    with pytest.raises(SimtrainError) as e:
        model_config({"hf_config": write(tmp_path, cfg, "x")})
    msg = str(e.value)
    assert "\n" not in msg and "model.hf_config" in msg and key in msg


def test_missing_file_and_key(tmp_path):
    with pytest.raises(SimtrainError, match="cannot read it"):
        model_config({"hf_config": str(tmp_path / "nope.json")})
    cfg = {k: v for k, v in LLAMA3_8B.items() if k != "hidden_size"}
    with pytest.raises(SimtrainError, match="missing key hidden_size"):
        model_config({"hf_config": write(tmp_path, cfg, "y")})


BRIEF = ("--tensor-model-parallel-size 8 --pipeline-model-parallel-size 16 --num-layers-per-virtual-pipeline-stage 1 "
         "--micro-batch-size 1 --global-batch-size 2048 --seq-length 8192 --sequence-parallel "
         "--recompute-granularity selective --use-distributed-optimizer --lr 3e-4 --train-iters 1000 --use-flash-attn --bf16")


def test_megatron_flags_fill_parallel_and_training():
    flags = parse(BRIEF)
    assert flags.ignored == ["--lr", "--train-iters"]
    s = load_scenario("llama3-405b-8k", ['model.name="llama3-70b"', "cluster.gpus=16384"], megatron=flags)
    p, t = s.parallel, s.training
    assert (p.tp, p.pp, p.dp, p.vp, p.micro_batch) == (8, 16, 0, 5, 1)  # 80 layers / (16 x 1) = 5 virtual stages
    assert (p.sequence_parallel, p.recompute, p.zero, p.flash_attention, p.overlap_grad_reduce) == (True, "selective", 1, True, False)
    assert (t.global_batch, t.seq_len, s.schedule.name) == (2048, 8192, "interleaved")
    assert (p.first_stage_layers, p.last_stage_layers) == (-1, -1)  # Megatron splits evenly unless told
    assert t.grad_precision == "fp32"  # Megatron forces fp32 main gradients for bf16 ...
    bf16 = parse("--bf16 --grad-reduce-in-bf16 --micro-batch-size 1 --seq-length 8192")
    assert load_scenario("llama3-405b-8k", megatron=bf16).training.grad_precision == "bf16"  # ... unless told


def test_megatron_model_flags_give_the_llama3_8b_shape():
    flags = ("--num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336 --num-attention-heads 32 "
             "--group-query-attention --num-query-groups 8 --swiglu --normalization RMSNorm --disable-bias-linear "
             "--untie-embeddings-and-output-weights --position-embedding-type rope --padded-vocab-size 128256 "
             "--recompute-activations --bf16 --micro-batch-size 1 --seq-length 8192 --attention-dropout 0 --hidden-dropout 0")
    parsed = parse(flags)
    assert parsed.ignored == []
    s = load_scenario("llama3-405b-8k", megatron=parsed)
    assert s.model.dropout == 0.0  # Megatron's default is 0.1; Llama recipes turn it off
    assert {**shape(s.model), "dropout": -1.0} == shape(model_config({"name": "llama3-8b"}))
    assert s.parallel.recompute == "selective"
    full = load_scenario(None, ['model.name="llama3-8b"'], megatron=parse(
        "--recompute-granularity=full --context-parallel-size 2 --bf16 --micro-batch-size 1 --seq-length 8192"))
    assert (full.parallel.recompute, full.parallel.cp, full.parallel.dp) == ("full", 2, 0)


@pytest.mark.parametrize("flags, fragment", [
    ("--tensor-model-parallel-size x", "--tensor-model-parallel-size 'x': expected a positive whole number"),
    ("--micro-batch-size", "--micro-batch-size needs a value"),
    ("--recompute-granularity some", "not a choice"),
    ("8 --bf16", "stray value '8'"),
    ("--sequence-parallel=1", "takes no value"),
])
def test_bad_megatron_flags_fail_with_one_line(flags, fragment):
    with pytest.raises(SimtrainError) as e:
        parse(flags)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_run_megatron_args_warns_once_and_applies(capsys, small_overrides):
    sets = sum((["--set", o] for o in small_overrides if not o.startswith(("parallel.tp", "parallel.pp", "parallel.dp"))), [])
    code = main(["run", *sets, "--megatron-args", "--tensor-model-parallel-size 4 --pipeline-model-parallel-size 2 "
                 "--micro-batch-size 1 --seq-length 2048 --bf16 --foo 3 --bar", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = [x for x in err.strip().splitlines() if " wall time " not in x]  # run --json's timing line
    assert lines == ["simtrain: warning: --megatron-args: ignored 2 flags simtrain does not model: --foo --bar"]
    layout = json.loads(out)["layout"]
    assert (layout["tp"], layout["pp"], layout["dp"]) == (4, 2, 2)


def test_set_wins_over_megatron_args(capsys, small_overrides):
    code = main(["run", *sum((["--set", o] for o in small_overrides), []), "--megatron-args",
                 "--tensor-model-parallel-size 4 --micro-batch-size 1 --seq-length 2048 --bf16", "--set", "parallel.tp=2",
                 "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["layout"]["tp"] == 2


def test_every_shipped_scenario_loads_and_lays_out():
    """The catalog cannot rot: each scenarios/*.toml parses with strict keys and gives a
    valid layout, except the one shipped to be refused (Llama 3 row 3 as printed)."""
    from pathlib import Path

    from simtrain.scenario.errors import SimtrainError
    from simtrain.scenario.layout import make_layout

    files = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))
    assert len(files) >= 30
    for f in files:
        if f.stem.endswith("-as-printed"):
            with pytest.raises(SimtrainError):
                make_layout(load_scenario(str(f)))
            continue
        L = make_layout(load_scenario(str(f)))
        assert L.world == L.tp * L.cp * L.pp * L.dp, f.name
