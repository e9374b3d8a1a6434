"""The package's shape (issue 12): every module imports alone, no import cycle, small files and functions.

* Every module is imported in a fresh interpreter, in alphabetical order: an import that only
  works after another module happened to be imported first fails here.
* The import graph is built with :mod:`ast` from every ``import`` statement of the package,
  function-level ones included (a cycle hidden inside a function is still a cycle); only
  ``if TYPE_CHECKING:`` imports, which never run, are left out.
* No file in ``src/`` is over 400 lines, no function over 80.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "imagefit"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the package."""
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (``from . import x`` -> the package)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # In a package's __init__ one dot is the package itself; in a plain module, its package.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _internal(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` refers to (itself, or the longest known prefix), if internal."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.AST) -> bool:
    """An ``if TYPE_CHECKING:`` block: imports for the type checker only, never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file, functions included), by :mod:`ast`.

    Imports under ``if TYPE_CHECKING:`` are left out: they are never executed.
    """
    modules = _sources()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                # `from pkg import mod` imports the submodule when there is one, else a name of pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                found = _internal(target, modules)
                if found is not None and found != module:
                    graph[module].add(found)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


# -- the checks ---------------------------------------------------------------------------------------
def test_every_module_imports_in_a_fresh_interpreter_in_alphabetical_order() -> None:
    names = sorted(m for m in _sources() if m != f"{PACKAGE}.__main__")  # __main__ runs the CLI
    code = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"modules that fail to import:\n{done.stdout}{done.stderr[-2000:]}"


def test_graph_builder_sees_function_level_imports() -> None:
    """Guard against a vacuous cycle test: a cycle made only of function-level imports is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("if TYPE_CHECKING:\n    from .model import M\ndef f():\n    from .artifacts import x\n")
    typing_block = next(n for n in ast.walk(tree) if _is_type_checking(n))
    assert isinstance(typing_block, ast.If)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "artifacts")
    assert _resolve("imagefit.model", False, node) == "imagefit.artifacts"
    assert _resolve("imagefit.train", True, node) == "imagefit.train.artifacts"
    graph = import_graph()
    assert graph and any(graph.values())


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (modules importing each other, directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_file_over_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines() -> None:
    long: dict[str, int] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = (node.end_lineno or node.lineno) - start + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("module", ["imagefit.artifacts", "imagefit.record", "imagefit.bounds", "imagefit.errors"])
def test_low_layers_do_not_import_the_package_root(module: str) -> None:
    """The cycle issue 12 names (imagefit -> api -> train -> artifacts -> imagefit for __version__)."""
    assert PACKAGE not in import_graph()[module]
