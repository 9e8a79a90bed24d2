"""Scenario inputs shared by run, sweep and search: Megatron-LM flags (`--megatron-args`,
`--megatron-script`) before `--set`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

VALUE_OPTIONS = ("--megatron-args",)  # options whose value may itself start with "--"


def add_megatron_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--megatron-args", metavar="FLAGS", default=None,
                   help='Megatron-LM launch flags describing the job from Megatron\'s defaults (a pasted block works: '
                        'continued lines, comments, a torchrun ... pretrain_gpt.py prefix), e.g. "--tensor-model-parallel-size 8 '
                        '--pipeline-model-parallel-size 16 --micro-batch-size 1 --seq-length 8192 --bf16"; applied before --set')
    p.add_argument("--megatron-script", metavar="FILE", default="",
                   help="a Megatron-LM launch script (bash: variables, arrays, the torchrun/python pretrain_gpt.py line); "
                        "its flags are read as --megatron-args")


def megatron_input(args: argparse.Namespace) -> Any:
    """The parsed Megatron flags of the command line (warnings on stderr), or None."""
    given = getattr(args, "megatron_args", None)
    text, script = given or "", getattr(args, "megatron_script", "") or ""
    if given is not None and not text.strip():  # e.g. --megatron-args "$FLAGS" with FLAGS unset
        from simtrain.scenario.errors import SimtrainError

        raise SimtrainError("--megatron-args '': no flags given; pass Megatron-LM's launch flags, e.g. "
                            "--megatron-args \"--tensor-model-parallel-size 8 --bf16\", or drop the option")
    if not text.strip() and not script:
        return None
    from simtrain.scenario.megatron_args import read, warning_lines

    flags = read(text, script)
    if flags is None:
        return None
    for line in warning_lines(flags):
        print(line, file=sys.stderr)
    return flags


def join_value_options(argv: list[str]) -> list[str]:
    """`--megatron-args "--use-distributed-optimizer"`: argparse would take the value for an
    option of its own; written as `--megatron-args=...` it stays the value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in VALUE_OPTIONS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out
