"""The package's shape: dependencies point one way (no import circle, lazy imports included),
no module over 400 lines, and the fork server knows nothing of the course."""

from __future__ import annotations

import ast
from pathlib import Path

from backprop_ninja.course import REPO_ROOT

SRC = REPO_ROOT / "src"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The package's modules that ``name`` imports anywhere (top level or inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
            # ``from . import job`` needs the module job; ``from .job import run`` needs job.
            found.update(submodules or {target})
    return (found & MODULES.keys()) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package():
    graph = {name: imported_modules(name) for name in MODULES}
    assert cycles(graph) == []


def test_no_module_over_400_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_fork_server_imports_only_the_standard_library():
    """Plumbing that knows nothing of the course: its modules import the standard library and
    each other, nothing else."""
    import sys

    names = [name for name in MODULES if name.split(".")[:2] == ["backprop_ninja", "forkserver"]]
    assert len(names) >= 2
    for name in names:
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        absolute = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert absolute - {"__future__"} <= sys.stdlib_module_names, name
        outside = [
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 1
        ]
        assert outside == [], name  # nothing of the package above it
