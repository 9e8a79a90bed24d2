"""Megatron-LM launch scripts as input: Megatron's own defaults on a neutral base, whole
scripts (continued lines, comments, arrays, launcher prefixes, unexpanded $VARS), and the
contradictions Megatron refuses."""

import json
from pathlib import Path

import pytest

from simtrain.cli import main
from simtrain.scenario.config import load_scenario
from simtrain.scenario.megatron_args import parse, read
from simtrain.scenario.megatron_script import launch_flags
from simtrain.workload.flops import stats
from tests.test_bad_files import assert_one_line_error

GPT3_SCRIPT = Path(__file__).resolve().parent / "data" / "megatron" / "train_gpt3_175b_distributed.sh"
BASE = "--micro-batch-size 1 --seq-length 2048 --bf16"


def gpt3_params(L: int, h: int, V: int, P: int) -> float:
    """GPT-3's parameters by hand: per layer QKV + output projection 4h^2 + 4h biases, MLP
    (4h) 8h^2 + 5h biases, two LayerNorms 4h; token (V x h) and learned position (P x h)
    embeddings, the output layer tied to the token embedding; the final LayerNorm 2h."""
    return L * (12 * h * h + 13 * h) + V * h + P * h + 2 * h


def test_the_gpt3_175b_example_script_gives_a_175b_model():
    s = load_scenario(None, megatron=read(script=str(GPT3_SCRIPT)))
    m = s.model
    # Megatron's GPT-2 BPE vocabulary (50,257) padded to a multiple of 128 x TP 8 = 1,024
    assert m.vocab_size == 51200
    assert (m.num_hidden_layers, m.hidden_size, m.intermediate_size, m.num_attention_heads) == (96, 12288, 49152, 96)
    assert (m.mlp, m.position_embedding, m.norm, m.bias, m.tie_word_embeddings) == ("plain", "learned", "layernorm", True, True)
    assert m.dropout == 0.1  # Megatron's --attention-dropout / --hidden-dropout default
    params = stats(m, 2048).params
    assert params == pytest.approx(gpt3_params(96, 12288, 51200, 2048), rel=1e-12)
    assert params == pytest.approx(175e9, rel=0.005)  # Brown et al. 2020, Table 2.1: 175.0B
    p, t = s.parallel, s.training
    assert (p.tp, p.pp, p.dp, p.micro_batch, t.global_batch, t.seq_len, t.precision) == (8, 16, 0, 1, 1536, 2048, "fp16")
    assert (s.cluster.topology, s.cluster.gpus, p.order) == ("dgx-h100", 0, "tp-cp-dp-pp")  # neutral base; Megatron's order


def test_pasting_the_script_equals_reading_it(capsys):
    """--megatron-args with the script's text (continued lines, comments, arrays, the torchrun
    prefix) gives the same scenario as --megatron-script."""
    text = GPT3_SCRIPT.read_text()
    a = load_scenario(None, megatron=read(text=text))
    b = load_scenario(None, megatron=read(script=str(GPT3_SCRIPT)))
    assert (a.parallel, a.training) == (b.parallel, b.training)
    assert a.model.name == "megatron-96x12288" and b.model.name == "train_gpt3_175b_distributed-96x12288"
    import dataclasses

    assert dataclasses.replace(a.model, name="") == dataclasses.replace(b.model, name="")


def test_gpt3_flags_alone_no_longer_make_a_llama_hybrid(capsys):
    """The issue's case: GPT-3's flags used to be merged into the default Llama 3 405B
    scenario (185.2B parameters with Llama's FFN and vocabulary)."""
    flags = ("--num-layers 96 --hidden-size 12288 --num-attention-heads 96 --seq-length 2048 --max-position-embeddings 2048 "
             "--micro-batch-size 1 --global-batch-size 64 --fp16 --tensor-model-parallel-size 8 "
             "--pipeline-model-parallel-size 16 --vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt")
    s = load_scenario(None, megatron=parse(flags))
    assert stats(s.model, 2048).params == pytest.approx(gpt3_params(96, 12288, 51200, 2048), rel=1e-12)
    assert s.schedule.name == "1f1b" and s.name == "megatron"


@pytest.mark.parametrize("extra, field, want", [
    ("", "intermediate_size", 4 * 4096),  # Megatron: ffn_hidden_size = 4 h
    ("--swiglu", "intermediate_size", 10880),  # int((4 h x 2 / 3) / 64) x 64 = int(10922.7 / 64) x 64
    ("", "mlp", "plain"),  # GELU
    ("--swiglu", "mlp", "gated"),
    ("", "num_key_value_heads", 32),  # no --group-query-attention: every head its own K/V
    ("--group-query-attention", "num_key_value_heads", 1),  # --num-query-groups defaults to 1
    ("--group-query-attention --num-query-groups 8", "num_key_value_heads", 8),
    ("", "dropout", 0.1),  # Megatron's default attention and hidden dropout
    ("--attention-dropout 0 --hidden-dropout 0", "dropout", 0.0),
    ("--vocab-size 32000", "vocab_size", 32768),  # padded to a multiple of 128 x TP 8 = 1,024: 32 x 1,024
])
def test_megatron_defaults(extra, field, want):
    flags = f"--num-layers 4 --hidden-size 4096 --num-attention-heads 32 --vocab-size 32000 --tensor-model-parallel-size 8 {BASE} {extra}"
    m = load_scenario(None, megatron=parse(flags)).model
    assert getattr(m, field) == want


@pytest.mark.parametrize("flags, vocab", [
    ("--vocab-size 32000 --tensor-model-parallel-size 8", 32768),  # multiple of 128 x 8 = 1,024: 32 x 1,024
    ("--vocab-size 32000 --tensor-model-parallel-size 2", 32000),  # multiple of 256: 125 x 256
    ("--vocab-size 32000 --tokenizer-type NullTokenizer", 32128),  # 32,001 (NullTokenizer's EOD) -> 251 x 128
    ("--vocab-size 50000 --make-vocab-size-divisible-by 64", 50048),  # 782 x 64
    ("--tokenizer-type GPT2BPETokenizer --vocab-file v.json", 50304),  # 50,257 -> 393 x 128
    ("--padded-vocab-size 50257", 50257),  # as given
])
def test_vocabulary_padding_follows_megatron(flags, vocab):
    m = load_scenario(None, megatron=parse(f"--num-layers 2 --hidden-size 1024 --num-attention-heads 8 {BASE} {flags}")).model
    assert m.vocab_size == vocab


def test_a_scenario_keeps_its_model_and_cluster_when_no_model_flag_is_given():
    s = load_scenario("llama3-405b-8k", megatron=parse(f"--tensor-model-parallel-size 8 --pipeline-model-parallel-size 16 "
                                                       f"{BASE} --use-tp-pp-dp-mapping"))
    assert s.model.name == "llama3-405b" and s.cluster.gpus == 8192 and s.cluster.topology == "dgx-h100"
    assert (s.parallel.tp, s.parallel.pp, s.parallel.vp, s.parallel.zero, s.parallel.order) == (8, 16, 1, 0, "tp-cp-pp-dp")
    assert s.schedule.name == "1f1b" and s.training.seq_len == 2048  # the flags' values, not the scenario's


def test_script_reading_handles_shell_forms(tmp_path):
    script = tmp_path / "train.sh"
    script.write_text(
        "#!/bin/bash\n"
        "TP=${TP:-4}   # default when the caller does not set it\n"
        "export PP=2\n"
        "MODEL=(\n  --num-layers 8   # layers\n  --hidden-size 1024\n)\n"
        "MODEL+=(--num-attention-heads 8)\n"
        "mkdir -p $CKPT; cd /workspace\n"
        "srun python -u pretrain_gpt.py \\\n"
        "   ${MODEL[@]} --tensor-model-parallel-size $TP --pipeline-model-parallel-size ${PP} \\\n"
        "   --micro-batch-size $MBS --seq-length 1024 --bf16 --vocab-size 32000 $EXTRA_ARGS \\\n"
        "   --save $CKPT\n")
    flags = read(script=str(script))
    assert flags.known["--tensor-model-parallel-size"] == 4 and flags.known["--pipeline-model-parallel-size"] == 2
    assert flags.known["--num-attention-heads"] == 8 and flags.known["--num-layers"] == 8
    assert flags.unexpanded == ["--micro-batch-size $MBS", "$EXTRA_ARGS"]
    assert flags.ignored == ["--save"]


def test_unexpanded_variables_are_named_in_one_warning(tmp_path, capsys):
    script = tmp_path / "train.sh"
    script.write_text(f"torchrun --nproc_per_node 8 pretrain_gpt.py --num-layers 2 --hidden-size 1024 "
                      f"--num-attention-heads 8 --vocab-size 32000 {BASE} --tensor-model-parallel-size $TP --data-path $DATA\n")
    assert main(["run", "--megatron-script", str(script), "--json"]) == 0
    err = [x for x in capsys.readouterr().err.strip().splitlines() if " wall time " not in x]  # run --json's timing line
    assert err == [f"simtrain: warning: --megatron-script {str(script)!r}: ignored 1 flag simtrain does not model: --data-path",
                   f"simtrain: warning: --megatron-script {str(script)!r}: 1 flag given by unexpanded shell variables, left "
                   "as the scenario or Megatron's defaults have them (define them in the script or use --set): "
                   "--tensor-model-parallel-size $TP"]


def test_a_lone_flag_value_is_not_taken_for_an_option(capsys):
    """argparse read `--megatron-args "--use-distributed-optimizer"` as an option of its own
    (a four-line usage error); now it is the value, and the error is Megatron's."""
    assert_one_line_error(["run", "--megatron-args", "--use-distributed-optimizer"], capsys,
                          "--megatron-args: neither --bf16 nor --fp16")


@pytest.mark.parametrize("flags, fragment", [
    ("--fp16 --bf16", "--fp16 and --bf16 together: Megatron refuses them"),
    (f"{BASE} --num-layers-per-virtual-pipeline-stage 2 --num-virtual-stages-per-pipeline-rank 2",
     "--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank together"),
    (f"{BASE} --tensor-model-parallel-size 8 --tp-comm-overlap", "--tp-comm-overlap without sequence parallelism"),
    (f"{BASE} --max-position-embeddings 1024", "--seq-length 2048 is above --max-position-embeddings 1024"),
    (f"{BASE} --recompute-activations --recompute-method uniform", "--recompute-method with selective recomputation"),
    ("--seq-length 2048 --bf16", "--micro-batch-size is missing: Megatron needs it"),
    (f"{BASE} --num-layers 2 --hidden-size 1024", "model flags without --num-attention-heads"),
    (f"{BASE} --num-layers 2 --hidden-size 1024 --num-attention-heads 8",
     "the vocabulary size comes from the tokenizer (no --vocab-size"),
    (f"{BASE} --position-embedding-type alibi", "--position-embedding-type 'alibi': not a choice"),
    (f"{BASE} --hidden-dropout 1.5", "--hidden-dropout '1.5': expected a probability in [0, 1)"),
    (f"{BASE} --hidden-size 1024 --num-layers 2 --num-attention-heads 8 --vocab-size 8 --tensor-model-parallel-size 3",
     "parallel.tp = 3: does not divide the 8 attention heads"),
])
def test_contradictions_and_gaps_fail_with_one_line(flags, fragment, capsys):
    assert_one_line_error(["run", "--megatron-args", flags], capsys, fragment)


def test_set_can_supply_what_the_flags_lack(capsys):
    flags = f"{BASE} --num-layers 2 --hidden-size 1024 --num-attention-heads 8 --tokenizer-type HuggingFaceTokenizer"
    assert main(["run", "--megatron-args", flags, "--set", "model.vocab_size=32000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_gpus"] == 1 and out["layout"]["tp"] == 1


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read it"),
    (b"\xff\xfe\x00binary", "not UTF-8 text"),
    (b"\x00\x01\x02binary", "a binary file"),
    (b"echo hello\n", "no Megatron flags found"),
    (b"#!/bin/bash\n# nothing here\n", "no Megatron flags found"),
])
def test_unreadable_scripts_fail_with_one_line(tmp_path, content, fragment, capsys):
    path = tmp_path / "train.sh"
    if content is not None:
        path.write_bytes(content)
    assert_one_line_error(["run", "--megatron-script", str(path)], capsys, f"--megatron-script {str(path)!r}", fragment)


def test_sweep_and_search_read_scripts_too(tmp_path, capsys):
    script = tmp_path / "train.sh"
    script.write_text("python pretrain_gpt.py --num-layers 4 --hidden-size 1024 --num-attention-heads 16 --vocab-size 32000 "
                      "--micro-batch-size 1 --global-batch-size 16 --seq-length 1024 --bf16\n")
    assert main(["sweep", "--megatron-script", str(script), "--set", "cluster.gpus=8", "--grid", "parallel.tp=1,2",
                 "--out", str(tmp_path / "s.csv"), "--json", "--jobs", "1", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["dp"] for r in rows] == [8, 4] and all(r["simulated"] for r in rows)
    assert main(["search", "--megatron-script", str(script), "--set", "cluster.gpus=8", "--tp", "1,2", "--pp", "1",
                 "--cp", "1", "--vp", "1", "--micro-batch", "1", "--recompute", "none", "--sp", "false", "--json",
                 "--jobs", "1", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["winner"]["tp"] in (1, 2)


def test_pasted_block_with_comments_and_continuations():
    text = ("torchrun --nproc_per_node 8 pretrain_gpt.py \\\n"
            "    --num-layers 2 \\\n"
            "    # a comment line\n"
            "    --hidden-size 1024  # trailing comment \\\n")
    assert launch_flags(text, "x").tokens == ("--num-layers", "2", "--hidden-size", "1024")


@pytest.mark.parametrize("flags, kernel, flash", [
    ("--use-flash-attn", "fa2", True),
    ("--attention-backend flash", "fa2", True),
    ("--attention-backend fused", "cudnn", True),  # Transformer Engine's cuDNN fused attention
    ("--attention-backend unfused", None, False),
])
def test_attention_backend_flags(flags, kernel, flash):
    s = load_scenario("llama3-405b-8k", megatron=parse(f"{BASE} {flags}"))
    assert s.parallel.flash_attention is flash
    if kernel:
        assert s.parallel.attention_kernel == kernel
