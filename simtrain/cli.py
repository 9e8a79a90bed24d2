"""Command-line entry point: `simtrain COMMAND ...`.

Each command lives in simtrain/commands/<name>.py with `add_parser(subparsers)` and
`run(args) -> int`. User errors (SimtrainError) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from typing import NoReturn

from simtrain.scenario.errors import SimtrainError


class OneLineParser(argparse.ArgumentParser):
    """argparse with simtrain's error format: one line on stderr naming the argument, the
    value and the fix, exit status 2 (argparse prints a usage block otherwise)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        cmd = self.prog.removeprefix("simtrain").strip()
        self.exit(2, f"simtrain: error: {cmd + ': ' if cmd else ''}{message}; {self.fix(message)}\n")

    def fix(self, message: str) -> str:
        helps = f"see `{self.prog} --help`"
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = [c.strip().strip("'") for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), choices, n=1)
            return f"did you mean {close[0]!r}? {helps}" if close else f"use one of them; {helps}"
        m = re.search(r"unrecognized arguments: (\S+)", message)
        if m:
            opts = [o for a in self._actions for o in a.option_strings]
            close = difflib.get_close_matches(m.group(1).split("=")[0], opts, n=1)
            return f"did you mean {close[0]}? {helps}" if close else f"drop it; {helps}"
        m = re.search(r"argument (\S+?)(/\S+)?: expected one argument", message)
        if m:
            return f"give it a value (one that starts with '-' must be written {m.group(1)}=VALUE); {helps}"
        if "invalid int value" in message:
            return f"give a whole number, e.g. 8; {helps}"
        if "invalid float value" in message:
            return f"give a number, e.g. 1.5; {helps}"
        return helps


COMMANDS = ["run", "schedules", "topology", "collective", "validate", "calibrate", "compare", "sweep", "search", "list"]
MODULES = {"list": "listing"}  # command -> module of simtrain/commands where the names differ


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="simtrain",
        description="Discrete-event simulator of distributed LLM training steps: "
        "what MFU will this layout get on that cluster, and why?",
    )
    from simtrain import __version__

    parser.add_argument("--version", action="version", version=f"simtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"simtrain.commands.{MODULES.get(name, name.replace('-', '_'))}")
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
    from simtrain.commands.scenario_inputs import join_value_options

    try:
        args, extra = parser.parse_known_args(join_value_options(argv))
        if extra:  # reported by the command's own parser, which knows its options
            sub = _subparser(parser, getattr(args, "command", None)) or parser
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # a usage error was printed as one line: the status, as for SimtrainError
        if e.code == 2:
            return 2
        raise
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


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


if __name__ == "__main__":
    sys.exit(main())
