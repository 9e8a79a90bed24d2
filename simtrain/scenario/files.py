"""Where input files are found and how they are read: the user-editable catalogs
(simtrain.scenario.catalogs.CATALOGS: scenarios/, topologies/, schedules/, devices/, ...)
and TOML files, with one-line errors.

A name (not a path) is looked up in these folders, first match wins:
    1. $SIMTRAIN_HOME/<catalog>/                      (the user's own catalog)
    2. next to the scenario file that names it: <catalog>/ in its folder, or beside its
       folder (a project laid out like the repository: scenarios/, topologies/, devices/)
    3. ./<catalog>/ in the current directory
    4. the source checkout the package runs from (an editable install or a clone)
    5. the copy shipped inside the installed package (simtrain/catalogs/<catalog>/)
so a user's file overrides a shipped one of the same name. `simtrain list` shows the result.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Iterator

from simtrain.scenario.catalogs import CATALOGS, PACKAGED
from simtrain.scenario.errors import SimtrainError, bad

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # simtrain/


@dataclass(frozen=True)
class Root:
    """One folder a catalog's entries are looked up in, and where it comes from."""

    path: Path
    origin: str  # "$SIMTRAIN_HOME", "next to the scenario", "current directory", "checkout", "shipped"


def _builtin_roots(catalog: str) -> list[Root]:
    return [Root(PACKAGE_DIR.parent / catalog, "checkout"), Root(PACKAGE_DIR / PACKAGED / catalog, "shipped")]


def catalog_roots(catalog: str, near: str | Path | None = None) -> list[Root]:
    """The existing folders `catalog` entries are looked up in, in order (see the module
    docstring). `near`: the scenario file that names the entry, if any."""
    roots: list[Root] = []
    home = os.environ.get("SIMTRAIN_HOME")
    if home:
        roots.append(Root(Path(home) / catalog, "$SIMTRAIN_HOME"))
    if near:
        d = Path(near).resolve().parent
        # a shipped scenario's neighbours are the shipped catalogs: they keep their rank
        shipped = {r.path.resolve() for c in CATALOGS for r in _builtin_roots(c)}
        if d not in shipped:
            roots += [Root(p, "next to the scenario") for p in (d / catalog, d.parent / catalog)]
    builtin = _builtin_roots(catalog)
    if (Path.cwd() / catalog).resolve() not in {r.path.resolve() for r in builtin}:
        roots.append(Root(Path.cwd() / catalog, "current directory"))
    roots += builtin
    out, seen = [], set()
    for r in roots:
        key = r.path.resolve()
        if key not in seen and r.path.is_dir():
            seen.add(key)
            out.append(r)
    return out


def catalog_dir(name: str) -> Path:
    """The first existing folder of catalog `name` (the checkout's or the shipped one
    unless the user has their own)."""
    roots = catalog_roots(name)
    return roots[0].path if roots else PACKAGE_DIR.parent / name


def available(catalog: str, near: str | Path | None = None) -> dict[str, Root]:
    """Every entry of `catalog` by name (the file stem), with the folder it is taken from
    (the first one that has it)."""
    memo = _MEMO
    if memo is not None:
        key = ("available", catalog, str(near) if near else None, os.getcwd(), os.environ.get("SIMTRAIN_HOME"))
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = _available(catalog, near)
        return dict(hit)
    return _available(catalog, near)


def _available(catalog: str, near: str | Path | None = None) -> dict[str, Root]:
    suffix = CATALOGS[catalog]
    out: dict[str, Root] = {}
    for root in catalog_roots(catalog, near):
        for f in sorted(root.path.glob(f"*{suffix}")):
            if f.is_file():
                out.setdefault(f.stem, root)
    return out


def suggest(name: str, names: list[str] | dict, catalog: str, what: str, count: int | None = None) -> str:
    """The fix part of a not-found error: the closest names (among `names`, which may
    include aliases), never the whole list; `count`: entries in the catalog."""
    names = sorted(names)
    count = len(names) if count is None else count
    if not names:
        return (f"no {what} is installed (no {catalog}/ folder found); set SIMTRAIN_HOME to a folder "
                f"holding {catalog}/ or give a file path")
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    listing = f"`simtrain list {catalog}` shows all {count}"
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + f"? ({listing})"
    return f"give a file path or a name from `simtrain list {catalog}` ({count} there)"


# Lookups and file contents kept while `memoized()` is active (None: off)
_MEMO: dict[Hashable, Any] | None = None


@contextmanager
def memoized() -> Iterator[None]:
    """Within this block, `resolve_path` answers and `read_toml` contents are kept and
    reused: a sweep or search builds thousands of scenarios from the same few files
    (stack, topology, device), and finding and parsing them cost more than the rest of a
    scenario. The files must not change meanwhile; the memo is dropped when the outermost
    block ends. Nested blocks share it."""
    global _MEMO
    outer = _MEMO is None
    if outer:
        _MEMO = {}
    try:
        yield
    finally:
        if outer:
            _MEMO = None


def _copy(v: Any) -> Any:
    """A copy of parsed TOML that the caller may mutate (tables and arrays are copied)."""
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def resolve_path(source: str | Path, catalog: str, what: str, field_name: str, near: str | Path | None = None) -> Path:
    """The file `source` names: a path as given (relative to the current directory, then to
    the folder of `near`), else a catalog entry by name (see the module docstring)."""
    memo = _MEMO
    if memo is None:
        return _resolve_path(source, catalog, what, field_name, near)
    key = ("path", str(source), catalog, what, field_name, str(near) if near else None, os.getcwd(),
           os.environ.get("SIMTRAIN_HOME"))
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = _resolve_path(source, catalog, what, field_name, near)
    return hit


def _is_file(p: Path) -> bool:
    """Path.is_file that answers False for a name no file system can hold (a name over 255
    bytes raises OSError: File name too long) instead of raising."""
    try:
        return p.is_file()
    except OSError:
        return False


def _resolve_path(source: str | Path, catalog: str, what: str, field_name: str, near: str | Path | None = None) -> Path:
    suffix = CATALOGS[catalog]
    if not str(source).strip():
        raise bad(field_name, str(source), "is empty", f"give a {what} file path or a name from `simtrain list {catalog}`")
    p = Path(source)
    candidates = [p] if p.suffix else [p.with_suffix(suffix), p]
    if near and not p.is_absolute() and len(p.parts) > 1:
        base = Path(near).resolve().parent
        candidates += [base / c for c in candidates]
    for c in candidates:
        if _is_file(c):
            return c
    for root in catalog_roots(catalog, near):
        for c in (root.path / p.name, root.path / f"{p.name}{suffix}"):
            if _is_file(c):
                return c
    raise bad(field_name, str(source), f"no such {what} file", suggest(p.stem if p.suffix == suffix else p.name,
                                                                  available(catalog, near), catalog, what))


def read_toml(path: Path, field_name: str) -> dict[str, Any]:
    memo = _MEMO
    if memo is None:
        return _read_toml(path, field_name)
    key = ("toml", os.path.abspath(path))
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = _read_toml(path, field_name)
    return _copy(hit)


def _read_toml(path: Path, field_name: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not valid TOML ({e}); fix the file's syntax") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not UTF-8 text; give a TOML file") from None
    except OSError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: cannot read it ({e.strerror}); check the path") from None
