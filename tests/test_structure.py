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


# Each module's place, lowest first: a module imports only from its own group or lower ones.
# ``judge → testing/verify → grading``: the notebook's tests and the trusted verifier are
# siblings built on the judge, and neither imports the other.
LAYERS: list[set[str]] = [
    {"course", "text", "cells", "forkserver"},
    {"resources"},
    {"data"},
    {"model"},
    {"reference", "training"},
    {"cases", "plots", "timing"},
    {"judge"},
    {"integrity"},
    {"sandbox"},
    {"testing"},
    {"verify"},
    {"grading", "student", "maintainer"},
    {"hub"},
    {"classroom"},
]
TOP_LEVEL_LIMIT = 14


def group_of(name: str) -> str:
    """``backprop_ninja.judge.check`` → ``judge``; ``backprop_ninja.data`` → ``data``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank_of(group: str) -> int:
    return next(rank for rank, groups in enumerate(LAYERS) if group in groups)


def test_every_module_has_a_place_in_the_layers():
    groups = {group_of(name) for name in MODULES} - {""}
    placed = set().union(*LAYERS)
    assert groups - placed == set(), "put the new module or folder in LAYERS"


def test_no_module_imports_upward_or_sideways():
    """An import goes to the module's own group or a lower layer, never to a sibling group."""
    wrong = {
        (name, other)
        for name in MODULES
        if group_of(name)
        for other in imported_modules(name)
        if group_of(other)
        and group_of(other) != group_of(name)
        and rank_of(group_of(other)) >= rank_of(group_of(name))
    }
    assert wrong == set()


def test_at_most_14_modules_sit_at_the_top_of_the_package():
    top = [path for path in (SRC / "backprop_ninja").glob("*.py") if path.name != "__init__.py"]
    assert len(top) <= TOP_LEVEL_LIMIT, sorted(path.name for path in top)


def test_every_folder_says_its_job_in_its_first_docstring_line():
    """A newcomer names a folder's job from ``__init__.py``; the package's own is the map."""
    package = SRC / "backprop_ninja"
    folders = sorted(path.parent for path in package.glob("*/__init__.py"))
    assert len(folders) >= 8
    top_map = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    for folder in folders:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        first_line = doc.splitlines()[0] if doc else ""
        assert len(first_line.split()) >= 5, f"{folder.name}/__init__.py needs a one-line job"
        assert f"{folder.name}/" in top_map, f"the package map does not list {folder.name}/"
    for module in package.glob("*.py"):
        if module.name != "__init__.py":
            assert module.name in top_map, f"the package map does not list {module.name}"


def test_no_two_modules_share_a_name():
    stems: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if path.stem not in {"__init__", "__main__"}:
            stems.setdefault(path.stem, []).append(name)
    assert {stem: names for stem, names in stems.items() if len(names) > 1} == {}


def private_imports(path: Path) -> list[str]:
    """``from X import _name``: a private name taken from another module."""
    return [
        f"{node.module}:{alias.name}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_the_private_import_finder_finds_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from .scope import _helper, public\nfrom os import path\n", encoding="utf-8")
    assert private_imports(sample) == ["scope:_helper"]


def test_no_private_name_is_imported_across_modules():
    checked = [*MODULES.values(), *(REPO_ROOT / "tests").glob("*.py"), *(REPO_ROOT / "bench").glob("*.py")]
    found = {str(path.relative_to(REPO_ROOT)): private_imports(path) for path in checked}
    assert {path: names for path, names in found.items() if names} == {}
