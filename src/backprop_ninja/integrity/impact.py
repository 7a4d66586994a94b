"""Which tests a finding voids: the answer functions it reaches, and their tests."""

from __future__ import annotations

import ast
from collections.abc import Iterable

from ..course import DEPENDENT_TESTS
from ..judge.exercises import GRADED_TESTS
from .findings import Finding
from .scope import imported_modules_of


# ------------------------------------------------------------ which answers a finding hits
def top_level_definitions(tree: ast.Module) -> dict[str, set[str]]:
    """Top-level definitions of a cell → the global names their code refers to.

    Functions, classes, imports and module-level assignments (``grad_b2 = lambda d: d.sum(0)``).
    """
    definitions: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            definitions.setdefault(node.name, set()).update(names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, _ in imported_modules_of(node):
                definitions.setdefault(name, set())
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            used = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)} if node.value else set()
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        definitions.setdefault(sub.id, set()).update(used)
    return definitions


def callers_closure(names: set[str], references: dict[str, set[str]]) -> set[str]:
    """``names`` and every definition that refers to one of them, transitively."""
    affected = set(names)
    changed = True
    while changed:
        changed = False
        for definition, used in references.items():
            if definition not in affected and used & affected:
                affected.add(definition)
                changed = True
    return affected


def graded_test_ids(notebook_name: str) -> tuple[str, ...]:
    """Every graded test cell of a notebook: the gradient tests, then the dependent ones."""
    return tuple(GRADED_TESTS[notebook_name]) + tuple(DEPENDENT_TESTS.get(notebook_name, {}))


def affected_tests(findings: Iterable[Finding], notebook_name: str) -> dict[str, list[Finding]]:
    """Test grade_id → the findings that void it (tests with none are left out)."""
    exercises = GRADED_TESTS[notebook_name]
    dependent = DEPENDENT_TESTS.get(notebook_name, {})
    function_of = {gid: ex.function for gid, ex in exercises.items()} | dependent
    result: dict[str, list[Finding]] = {}
    for finding in findings:
        for gid in graded_test_ids(notebook_name):
            if finding.whole_notebook or function_of[gid] in finding.functions:
                result.setdefault(gid, []).append(finding)
    return result


def summary(findings: Iterable[Finding]) -> str:
    """One line per finding, for logs and feedback."""
    return "\n".join(str(f) for f in findings)
