"""Where input files are found and how they are read: the user-editable catalogs
(scenarios/, topologies/, schedules/) and TOML files, with one-line errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from simtrain.scenario.errors import SimtrainError, bad

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # simtrain/


def catalog_dir(name: str) -> Path:
    """Folder of a user-editable catalog (scenarios/, topologies/, schedules/).

    Looked up in $SIMTRAIN_HOME, then the source checkout next to the package, then the
    current directory.
    """
    roots = [os.environ.get("SIMTRAIN_HOME"), PACKAGE_DIR.parent, Path.cwd()]
    for root in roots:
        if root and (Path(root) / name).is_dir():
            return Path(root) / name
    return PACKAGE_DIR.parent / name


def resolve_path(source: str | Path, catalog: str, what: str, field_name: str) -> Path:
    if not str(source).strip():
        available = sorted(x.stem for x in catalog_dir(catalog).glob("*.toml"))
        raise bad(field_name, str(source), "is empty", f"give a {what} file path or one of: {', '.join(available)}")
    p = Path(source)
    candidates = [p] if p.suffix else [p.with_suffix(".toml"), p]
    candidates += [catalog_dir(catalog) / p.name, catalog_dir(catalog) / f"{p.name}.toml"]
    for c in candidates:
        if c.is_file():
            return c
    available = sorted(x.stem for x in catalog_dir(catalog).glob("*.toml"))
    raise bad(
        field_name, str(source), f"no such {what} file",
        f"give a path to a .toml file or one of: {', '.join(available) or '(catalog is empty)'}",
    )


def read_toml(path: Path, field_name: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not valid TOML ({e}); fix the file's syntax") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"{field_name} = {str(path)!r}: not UTF-8 text; give a TOML file") from None
    except OSError as e:
        raise SimtrainError(f"{field_name} = {str(path)!r}: cannot read it ({e.strerror}); check the path") from None

