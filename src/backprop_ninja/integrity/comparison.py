"""The lecture's comparison with autograd, written at the top level of an answer cell.

The lecture compares each manual gradient with autograd's. Done at the top level of an
answer cell, that comparison is not part of the answer function: the verifier runs answer
cells without autograd, so it cannot help the function. Such a finding voids nothing and
says where the comparison belongs. It still voids the cell's functions when one of them
reads a name the comparison assigns.
"""

from __future__ import annotations

import ast

from .scope import local_names, root_name

COMPARISON_MESSAGE = (
    "{where} compares with autograd at line {line} — move that comparison into a cell of its own "
    "(insert a cell below the answer cell): answer cells are graded without autograd"
)

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def comparison_only(tree: ast.Module, line: int) -> bool:
    """Whether the top-level statement at ``line`` is code no function of the cell uses."""
    stmt = next((s for s in tree.body if s.lineno <= line <= (s.end_lineno or s.lineno)), None)
    if stmt is None or any(isinstance(n, (*_FUNCTIONS, ast.ClassDef, ast.Global)) for n in ast.walk(stmt)):
        return False
    assigned = _assigned_names(stmt)
    functions = [n for n in ast.walk(tree) if isinstance(n, _FUNCTIONS)]
    for function in functions:
        reads = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        if (reads - local_names(function)) & assigned:
            return False
    return bool(functions)


def _assigned_names(stmt: ast.stmt) -> set[str]:
    """Every name the statement binds or changes (``x = …``, ``x[…] = …``, ``x.a = …``)."""
    assigned = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(stmt):
        for target in [*getattr(node, "targets", []), getattr(node, "target", None)]:
            if isinstance(target, (ast.Subscript, ast.Attribute)) and (root := root_name(target)):
                assigned.add(root)
    return assigned
