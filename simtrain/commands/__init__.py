"""One module per CLI command: `add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse


def add_scenario_args(p: argparse.ArgumentParser, optional: bool = True) -> None:
    """The scenario argument and --set overrides, shared by every command that simulates."""
    p.add_argument("scenario", nargs="?" if optional else None, default=None,
                   help="scenario: a TOML path or a name in scenarios/ (default: llama3-405b-8k)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a scenario field, e.g. --set parallel.tp=4 (repeatable)")
