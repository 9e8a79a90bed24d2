"""Command-line entry point: `simtrain COMMAND ...`.

Each command lives in simtrain/commands/<name>.py with `add_parser(subparsers)` and
`run(args) -> int`. User errors (SimtrainError) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from simtrain.scenario.errors import SimtrainError

COMMANDS = ["run", "schedules", "topology", "collective", "validate", "calibrate", "compare", "sweep", "search"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simtrain",
        description="Discrete-event simulator of distributed LLM training steps: "
        "what MFU will this layout get on that cluster, and why?",
    )
    from simtrain import __version__

    parser.add_argument("--version", action="version", version=f"simtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"simtrain.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("simtrain.commands"):
                continue  # command not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["run"]  # `simtrain` alone simulates the default scenario
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except SimtrainError as e:
        print(f"simtrain: error: {str(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simtrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
