"""Scanning a notebook: every code cell the student wrote or changed, with the scanner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..text import one_line
from .comparison import COMPARISON_MESSAGE, comparison_only
from .findings import Finding
from .impact import callers_closure, top_level_definitions
from .scope import attach_parents, context_for, module_level_names
from .submission import CodeCell, Submission, SubmissionError, prepare_source, read_submission
from .visitor import CellScanner

_DEF_LINE = re.compile(r"^(?:async\s+)?def\s+(\w+)|^(\w+)\s*=\s*lambda\b", re.MULTILINE)


def scan_cells(cells: list[CodeCell], restored: list[CodeCell]) -> list[Finding]:
    """The scan itself, on classified cells (see ``scan_notebook``)."""
    scanned = [c for c in cells if c.role in ("answer", "added")]
    trees = {c.index: ast.parse(c.python) for c in scanned if c.python is not None}
    ctx = context_for(restored, trees.values())
    ctx.defined = {name for tree in trees.values() for name in module_level_names(tree)}
    references: dict[str, set[str]] = {}
    cell_defs: dict[int, set[str]] = {}
    for cell in scanned:
        if cell.role == "answer" and cell.index in trees:
            defs = top_level_definitions(trees[cell.index])
            cell_defs[cell.index] = set(defs)
            for name, used in defs.items():
                references.setdefault(name, set()).update(used - {name})

    findings: list[Finding] = []
    seen: set[tuple[str, int, str]] = set()

    def emit(cell: CodeCell, line: int, kind: str, message: str, functions=(), whole=False):
        key = (cell.label, line, kind)
        if key not in seen:
            seen.add(key)
            findings.append(
                Finding(cell.label, line, kind, one_line(message, 240), tuple(sorted(functions)), whole)
            )

    for cell in scanned:
        where = "an answer cell" if cell.role == "answer" else cell.label
        for line, what in cell.magic_findings:
            emit(
                cell,
                line,
                "dynamic",
                f"{where} runs `{one_line(what, 60)}` — shell commands and "
                "IPython magics other than %time/%timeit are not allowed in graded notebooks",
                whole=True,
            )
        if cell.too_large:
            emit(
                cell,
                0,
                "unknown",
                f"{where}: {cell.syntax_error} — every test of this notebook waits for a TA; "
                "move data out of the notebook's code",
                whole=True,
            )
            continue
        if cell.python is None:
            meant = {m.group(1) or m.group(2) for m in _DEF_LINE.finditer(cell.source)} | (
                {cell.label} if cell.role == "answer" else set()
            )
            if cell.role == "answer":
                emit(
                    cell,
                    0,
                    "syntax",
                    f"{where} does not parse ({cell.syntax_error}) — nothing in it can run",
                    meant,
                )
            else:
                emit(
                    cell,
                    0,
                    "syntax",
                    f"{where} does not parse ({cell.syntax_error}) — it cannot run; fix or delete it",
                )
            continue
        tree = trees[cell.index]
        attach_parents(tree)
        scanner = CellScanner(cell, ctx)
        scanner.visit(tree)
        for line, kind, message, owner in scanner.findings:
            if kind in ("monkeypatch", "dynamic"):
                emit(cell, line, kind, message, whole=True)
                continue
            if kind == "autograd" and owner is None and comparison_only(tree, line):
                emit(cell, line, kind, COMPARISON_MESSAGE.format(where=where, line=line))
                continue
            direct = {owner} if owner else cell_defs.get(cell.index, set())
            emit(cell, line, kind, message, callers_closure(direct, references))
    return findings


def scan_notebook(submitted_path: Path, source_path: Path | None = None) -> list[Finding]:
    """Scan the code of a submitted notebook, without running it.

    ``source_path``: the instructor's version of the same notebook (default: the
    notebook of the same name under solutions/backprop_ninja). An unreadable submission
    gives a single ``syntax`` finding that voids the whole notebook.
    """
    try:
        submission = read_submission(Path(submitted_path), source_path)
    except SubmissionError as error:
        return [unreadable(error)]
    return scan_submission(submission)


def scan_submission(submission: Submission) -> list[Finding]:
    """The findings of a submission already read (``read_submission``)."""
    return scan_cells(submission.cells, submission.restored)


def unreadable(error: SubmissionError) -> Finding:
    """An unreadable submission: one ``syntax`` finding that voids the whole notebook."""
    return Finding("notebook", 0, "syntax", str(error), (), True)


def scan_answer_source(source: str, label: str) -> list[Finding]:
    """The scan of one answer cell's text: the notebooks' tests show its findings in the kernel."""
    return scan_cells([prepare_source(0, "answer", label, source)], [])
