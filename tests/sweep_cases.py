"""Small scenarios for the sweep and search tests (seconds, not minutes)."""

from pathlib import Path

WIDE = """
name = "wide-4l"
description = "4 wide layers (Llama 3 70B's width) on one DGX A100: some layouts do not fit"
[model]
num_hidden_layers = 4
hidden_size = 8192
intermediate_size = 28672
num_attention_heads = 64
num_key_value_heads = 8
vocab_size = 128256
[cluster]
topology = "dgx-a100"
gpus = 8
[parallel]
tp = 2
pp = 2
zero = 0
[training]
seq_len = 1024
global_batch = 16
"""

TINY = """
name = "tiny"
description = "a 0.2B model on one DGX A100 node: everything fits replicated"
[model]
num_hidden_layers = 4
hidden_size = 1024
intermediate_size = 4096
num_attention_heads = 16
num_key_value_heads = 16
vocab_size = 32000
[cluster]
topology = "dgx-a100"
gpus = 8
[parallel]
tp = 1
pp = 1
[training]
seq_len = 1024
global_batch = 64
"""


def scenario_file(tmp_path: Path, text: str, name: str) -> str:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return str(p)
