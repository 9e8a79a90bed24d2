"""The package's shape, checked from its source with `ast`: imports only point down the
pipeline (scenario -> hardware -> network -> schedule -> workload -> engine -> analysis
-> explore -> plots -> commands), there is no import loop, and no module is over 400 lines.

An import of `simtrain.a.b` counts as importing the module `simtrain.a.b` and, since Python
runs them first, the packages `simtrain.a` (its `__init__.py`) that the importer does not
itself lie in. `from simtrain.a import b` imports the submodule `b` when there is one, else
the package `simtrain.a`. Relative imports and imports inside functions count the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "simtrain"
MAX_LINES = 400

# Layer of each folder (or top-level module) of simtrain/ -> rank. A module may import
# modules of its own layer or of a lower rank, never a higher one.
LAYERS = {
    "scenario": 0,  # TOML, --set, model shapes, HF / Megatron readers, layout, units, errors
    "hardware": 1,  # devices, topology builders, summaries
    "network": 2,  # flow network, collectives, point-to-point, nccl-tests bench
    "schedule": 3,  # pipeline schedules as data
    "workload": 4,  # FLOPs, compute-time model, per-layer costs, memory
    "engine": 5,  # plan, simpy engine, timeline records, what-ifs
    "analysis": 6,  # simulate, metrics, hotspots, report, compare, validate, trace
    "explore": 7,  # sweep, search, executors
    "plots": 8,
    "commands": 9,
    "cli": 9,
    "api": 9,  # simtrain/api.py: the Python API (commands and cli.py beside it)
    "__init__": 9,  # simtrain/__init__.py: the public API
}


def package_modules(pkg: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `pkg` (packages by __init__.py)."""
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = list(p.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def module_imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports (see the module docstring)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in mods)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                if f"{target}.{a.name}" in mods:
                    found.add(f"{target}.{a.name}")
                elif target in mods:
                    found.add(target)
    own = set(_ancestors(name)) | {name}
    for m in list(found):
        found.update(a for a in _ancestors(m) if a in mods and a not in own)
    found.discard(name)
    return found


def import_graph(pkg: Path) -> dict[str, set[str]]:
    mods = package_modules(pkg)
    return {name: module_imports(name, path, mods) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def layer_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = import_graph(PKG)


def test_every_module_belongs_to_a_declared_layer() -> None:
    unknown = sorted(n for n in GRAPH if layer_of(n) not in LAYERS)
    assert not unknown, f"modules outside the declared layers (add the folder to LAYERS): {unknown}"


def test_no_import_loops() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_imports_only_point_down_the_pipeline() -> None:
    upward = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
              for a, deps in sorted(GRAPH.items()) for b in sorted(deps)
              if LAYERS[layer_of(a)] < LAYERS[layer_of(b)]]
    assert not upward, "imports pointing up the pipeline:\n" + "\n".join(upward)


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def test_each_layer_folder_says_what_it_is_and_may_import() -> None:
    for folder in sorted(p.parent for p in PKG.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert folder.name in LAYERS, folder
        assert "import" in doc.lower(), f"{folder.name}/__init__.py: its docstring should say what the layer may import"


# --- the checker itself, on small packages written for the purpose ----------------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def test_checker_finds_a_loop_through_absolute_relative_and_submodule_imports(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "",
        "pkg/a/x.py": "from pkg.b import y\n",  # y is a submodule: imports pkg.b.y
        "pkg/b/__init__.py": "",
        "pkg/b/y.py": "def f():\n    from ..a import x  # relative, inside a function\n",
    })
    graph = import_graph(pkg)
    assert "pkg.b.y" in graph["pkg.a.x"] and "pkg.a.x" in graph["pkg.b.y"]
    assert find_cycle(graph) in (["pkg.a.x", "pkg.b.y", "pkg.a.x"], ["pkg.b.y", "pkg.a.x", "pkg.b.y"])


def test_checker_counts_the_package_init_an_import_runs_first(tmp_path: Path) -> None:
    # pkg.s re-exports pkg.s.e, which imports pkg.t; pkg.t imports pkg.s.u, which runs
    # pkg/s/__init__.py first: a loop at import time although no module names the other
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/s/__init__.py": "from pkg.s.e import E\n",
        "pkg/s/e.py": "from pkg.t import T\nE = 1\n",
        "pkg/s/u.py": "U = 1\n",
        "pkg/t.py": "from pkg.s.u import U\nT = 1\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.t"] == {"pkg.s.u", "pkg.s"}
    assert "pkg.s" not in graph["pkg.s.e"]  # a module's own package is already running
    assert find_cycle(graph) is not None


@pytest.mark.parametrize("text, expected", [
    ("from pkg.s import thing\n", {"pkg.s"}),  # a name, not a submodule: the package
    ("import pkg.s.u\n", {"pkg.s.u", "pkg.s"}),
    ("from . import u\n", {"pkg"}),  # in pkg/t.py: no module pkg.u, so a name in pkg/__init__.py
])
def test_checker_resolves_names(tmp_path: Path, text: str, expected: set[str]) -> None:
    pkg = _write(tmp_path, {"pkg/__init__.py": "", "pkg/s/__init__.py": "", "pkg/s/u.py": "", "pkg/t.py": text})
    assert import_graph(pkg)["pkg.t"] == expected
