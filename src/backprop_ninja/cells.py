"""Reading nbgrader notebooks as data: which cells are answers, tests or read-only."""

from __future__ import annotations

from pathlib import Path

# What every answer cell may assume is imported (the notebooks' setup cells import these too).
ANSWER_PRELUDE = "import math\nimport torch\nimport torch.nn.functional as F\n"


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_answer(cell) -> bool:
    """An autograded answer cell: the student writes code here."""
    return cell.cell_type == "code" and bool(nbgrader_meta(cell).get("solution"))


def is_test(cell) -> bool:
    """An autograded test cell: graded, not written by the student."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def read_notebook(path: Path):
    import nbformat  # here, not at the top: importing it costs ~0.5 s (jsonschema), and the
    # verifier's child and every notebook kernel import this module without reading notebooks

    return nbformat.read(str(path), as_version=4)


def answer_cells(nb) -> list:
    return [cell for cell in nb.cells if is_answer(cell)]


def load_answers(path: Path) -> dict:
    """Execute a notebook's answer cells (after ``ANSWER_PRELUDE``) and return their namespace.

    Only for trusted notebooks (the solutions): this runs their code in this process.
    """
    namespace: dict = {"__name__": "answers"}
    exec(compile(ANSWER_PRELUDE, "<prelude>", "exec"), namespace)
    for cell in answer_cells(read_notebook(path)):
        exec(compile(cell.source, f"<{grade_id(cell)}>", "exec"), namespace)
    return namespace
