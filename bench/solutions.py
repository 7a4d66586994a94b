"""The solution's answer functions, loaded from the instructor's notebooks.

The bench times the course's own solution, so it reads it from where it lives — the
answer cells of solutions/backprop_ninja/*.ipynb — instead of keeping a second copy.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from backprop_ninja.cells import answer_cells, load_answers, read_notebook
from backprop_ninja.cells import grade_id as cell_grade_id
from backprop_ninja.course import ASSIGNMENT

REPO_ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS_DIR = REPO_ROOT / "solutions" / ASSIGNMENT


@cache
def load_solution(notebook: str, directory: Path = SOLUTIONS_DIR) -> dict:
    """The namespace of ``notebook``'s answer cells (e.g. ``"4_full_training"``)."""
    path = Path(directory) / f"{notebook}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the bench times the solution notebooks")
    return load_answers(path)


def solution_source(notebook: str, grade_id: str, directory: Path = SOLUTIONS_DIR) -> str:
    """The source of ``notebook``'s answer cell ``grade_id`` (e.g. ``"manual_backward"``)."""
    nb = read_notebook(Path(directory) / f"{notebook}.ipynb")
    for cell in answer_cells(nb):
        if cell_grade_id(cell) == grade_id:
            return cell.source
    raise LookupError(f"{notebook} has no answer cell {grade_id!r}")
