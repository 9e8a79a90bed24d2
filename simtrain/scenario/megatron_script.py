"""Megatron-LM launch scripts -> the flags of their training command.

Reads what a launch script (`--megatron-script FILE`) or a pasted block of one
(`--megatron-args "..."`) holds, the way bash would for the parts that matter:

- backslash-continued lines are joined; `#` comments are dropped (shlex rules: a `#`
  starting a word);
- assignments `NAME=value` and `export NAME=value` define variables, `NAME=( ... )`
  arrays (over several lines, with comments inside), `NAME+=( ... )` appends to them;
- in the training command, `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME[@]}` are
  expanded with them; what the script does not define (`$1`, `$DATA_PATH` set by the
  caller, `$(...)`) stays as written and is reported as unexpanded;
- the training command is the last line running a Python script (`torchrun ...
  pretrain_gpt.py ...`, `python pretrain_gpt.py ...`, `srun python ...`): what precedes
  the script (launcher and its options) is dropped, what follows are Megatron's flags
  (and lines of flags right after it that a comment line cut off from it, which bash
  would run as commands of their own: in a pasted block they are meant as flags).
  Without such a line, the loose flags of the text are taken (a pasted block), else the
  contents of its arrays.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from simtrain.scenario.errors import SimtrainError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGN = re.compile(rf"^({_NAME})(\+?)=(.*)$", re.S)
_REF = re.compile(rf"\$(?:\{{({_NAME})(\[[@*]\])?(?::?-([^}}]*))?\}}|({_NAME}))")
SEPARATORS = {";", "&&", "||", "|", "&"}


@dataclass(frozen=True)
class Launch:
    """The flags of a launch command and the variables that could not be expanded."""

    tokens: tuple[str, ...]
    unexpanded: tuple[str, ...]  # words that still hold a variable reference, e.g. "$DATA_PATH"


def _logical_lines(text: str, where: str) -> list[list[str]]:
    text = re.sub(r"\\\r?\n", " ", text)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            toks = shlex.split(line, comments=True, posix=True)
        except ValueError as e:
            raise SimtrainError(f"{where}: line {n}: cannot split it into words ({e}); check the quotes") from None
        # `a; b` and `a && b` are two commands
        cmd: list[str] = []
        for t in toks:
            if t in SEPARATORS:
                if cmd:
                    out.append(cmd)
                cmd = []
            elif t.endswith(";") and len(t) > 1:
                cmd.append(t[:-1])
                out.append(cmd)
                cmd = []
            else:
                cmd.append(t)
        if cmd:
            out.append(cmd)
    return out


UNKNOWN = object()  # a variable whose value depends on what the script cannot know ($1, $(...))


def unexpanded(word: str) -> bool:
    """A word still holding a shell reference: $NAME, ${...}, $1, $@, $(...) or `...`."""
    return "$" in word or "`" in word


class _Shell:
    def __init__(self) -> None:
        self.vars: dict[str, object] = {}

    def expand(self, token: str) -> list[str]:
        """One word -> the words it becomes (an array reference splices its elements);
        references to undefined or unknowable variables stay as written."""
        whole = _REF.fullmatch(token)
        if whole and whole.group(2):  # ${NAME[@]}
            v = self.vars.get(whole.group(1))
            if isinstance(v, list):
                return list(v)
            return [token] if v is None or v is UNKNOWN else [str(v)]

        def sub(m: re.Match) -> str:
            v = self.vars.get(m.group(1) or m.group(4))
            if v is None and m.group(3) is not None:  # ${NAME:-default}: the caller did not set it
                return m.group(3)
            if v is None or v is UNKNOWN:
                return m.group(0)
            return " ".join(v) if isinstance(v, list) else str(v)

        return [_REF.sub(sub, token)]

    def value(self, raw: str) -> object:
        """An assignment's value, expanded now (later commands see the result)."""
        out = " ".join(self.expand(raw))
        return UNKNOWN if unexpanded(out) else out


def _is_script(token: str) -> bool:
    return token.endswith(".py")


def launch_flags(text: str, where: str) -> Launch:
    """The Megatron flags a launch script or pasted block holds (see the module docstring)."""
    sh = _Shell()
    commands: list[list[str]] = []
    loose: list[str] = []
    arrays: list[str] = []
    lines = _logical_lines(text, where)
    after_command = False
    i = 0
    while i < len(lines):
        toks = lines[i]
        i += 1
        if toks and toks[0] in ("export", "local", "declare", "readonly"):
            toks = [t for t in toks[1:] if not t.startswith("-") or "=" in t]
        m = _ASSIGN.match(toks[0]) if toks else None
        if m and not toks[0].startswith("-"):
            name, append, rest = m.groups()
            if rest.startswith("("):  # an array, maybe over several lines
                items = [rest[1:]] + toks[1:] if rest[1:] else toks[1:]
                while not (items and items[-1].endswith(")")) and i < len(lines):
                    items += lines[i]
                    i += 1
                if items and items[-1].endswith(")"):
                    items[-1] = items[-1][:-1]
                words = [w for t in items if t for w in sh.expand(t)]
                old = sh.vars.get(name, []) if append else []
                sh.vars[name] = (old if isinstance(old, list) else []) + words
                arrays += words
            else:
                sh.vars[name] = sh.value(rest)
            continue
        if any(_is_script(t) for t in toks):
            commands.append(toks)
            after_command = True
            continue
        if after_command and toks[0].startswith("--"):
            commands[-1] = commands[-1] + toks  # flags cut off from the command by a comment line
            continue
        after_command = False
        loose += toks
    if commands:
        def script_and_flags(c: list[str]) -> tuple[str, list[str]]:
            k = next(k for k, t in enumerate(c) if _is_script(t))
            return c[k].rsplit("/", 1)[-1], [w for t in c[k + 1:] for w in sh.expand(t)]

        script, words = script_and_flags(commands[-1])
        runs = {tuple(f) for sc, f in map(script_and_flags, commands) if sc == script}
        if len(runs) > 1:  # which one trains is not ours to guess
            raise SimtrainError(f"{where}: {sum(1 for c in commands if script_and_flags(c)[0] == script)} lines run "
                                f"{script} with different flags; keep the one whose step you simulate")
    elif loose:
        words = [w for t in loose for w in sh.expand(t)]
    else:
        words = arrays
    return Launch(tuple(words), tuple(w for w in words if unexpanded(w)))


def read_script(path: str) -> Launch:
    where = f"--megatron-script {path!r}"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SimtrainError(f"{where}: cannot read it ({e.strerror}); give the path of a Megatron-LM launch script") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SimtrainError(f"{where}: not UTF-8 text; give a launch script (a shell file)") from None
    if "\0" in text:
        raise SimtrainError(f"{where}: a binary file, not a launch script; give the shell script that runs pretrain_gpt.py")
    launch = launch_flags(text, where)
    if not any(t.startswith("--") for t in launch.tokens):
        raise SimtrainError(f"{where}: no Megatron flags found (no line runs a .py script with --flags); "
                            "give the script that runs pretrain_gpt.py")
    return launch
