"""Scenario inputs shared by run, sweep and search: `--megatron-args` before `--set`."""

from __future__ import annotations

import argparse
import sys


def add_megatron_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--megatron-args", metavar="FLAGS", default="",
                   help='Megatron-LM launch flags filling [parallel] and [training] (and the model shape '
                        'when given), e.g. "--tensor-model-parallel-size 8 --pipeline-model-parallel-size 16 '
                        '--micro-batch-size 1 --sequence-parallel"; applied before --set')


def scenario_overrides(args: argparse.Namespace) -> list[str]:
    """Overrides from --megatron-args (warning on stderr for ignored flags), then --set."""
    text = getattr(args, "megatron_args", "") or ""
    if not text.strip():
        return list(args.overrides)
    from simtrain.scenario.megatron_args import scenario_megatron_overrides, warning_line

    meg, ignored = scenario_megatron_overrides(args.scenario, text)
    if ignored:
        print(warning_line(ignored), file=sys.stderr)
    return meg + list(args.overrides)
