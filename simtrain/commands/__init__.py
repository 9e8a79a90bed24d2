"""Commands layer, the top with simtrain/cli.py: one module per CLI command,
`add_parser(subparsers)` and `run(args) -> int`. May import every layer; none imports it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_scenario_args(p: argparse.ArgumentParser, optional: bool = True) -> None:
    """The scenario argument and --set overrides, shared by every command that simulates."""
    p.add_argument("scenario", nargs="?" if optional else None, default=None,
                   help="scenario: a TOML path or a name in scenarios/ (default: llama3-405b-8k)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a scenario field, e.g. --set parallel.tp=4 (repeatable)")


def check_outputs(args: argparse.Namespace, spec: dict[str, tuple[str, ...]]) -> None:
    """Before any work: every output option given (`--opt` -> attribute opt) is a non-empty
    path ending in one of its suffixes, so nothing is written in the wrong format and an
    empty path is not silently skipped."""
    from simtrain.scenario.errors import SimtrainError

    for opt, suffixes in spec.items():
        value = getattr(args, opt.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        if not str(value).strip():
            raise SimtrainError(f"{opt} '': empty path; give a file name ending in {' or '.join(suffixes)}")
        if not str(value).lower().endswith(suffixes):
            raise SimtrainError(f"{opt} {value!r}: unsupported format; end the name with {' or '.join(suffixes)}")
        # every output's folder is made when missing (as plots and traces always did), so
        # no option refuses a path another one accepts
        folder = Path(value).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SimtrainError(f"{opt} {value!r}: cannot make its folder {str(folder)!r} ({e.strerror}); "
                                "choose a writable folder") from None


def check_pairs(args: argparse.Namespace, pairs: list[tuple[str, str, bool]]) -> None:
    """Options that mean nothing without a partner: (option, partner, whether the partner
    is present). Refused rather than silently ignored."""
    from simtrain.scenario.errors import SimtrainError

    for opt, partner, present in pairs:
        value = getattr(args, opt.lstrip("-").replace("-", "_"), None)
        if value not in (None, "", []) and not present:
            raise SimtrainError(f"{opt} {value!r}: has no effect without {partner}; add {partner} or drop {opt}")
