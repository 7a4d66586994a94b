"""``make export``: the class's grades as files an LMS imports, never a "not graded" as 0.

grades.csv (nbgrader's export: one row per student, with its due date, the time of the
submission and any late penalty, plus a ``lateness`` column: "2 h 13 min late", empty on
time), grades_by_notebook.csv (one row per student and notebook, with the state, the notes and
the lateness) and grades_canvas.csv (Canvas's gradebook
import, with the LMS ids kept at collection). A student any of whose notebooks is not graded
(failed, stopped, not autograded yet) or still needs a manual grade gets an empty points cell
in grades_canvas.csv — Canvas then keeps whatever it had — unless ``ungraded_as_zero`` says to
count those notebooks as 0. Every file is written to a temporary file first and moved into
place only when all of them were written: a failed export keeps the previous files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..course import ASSIGNMENT, NOTEBOOKS
from .classdir import Course
from .status import FAILED, MISSING, STOPPED, replaced_atomically
from .table import NOT_AUTOGRADED, Row, class_rows

__all__ = ["export_class", "pending_students"]


def pending_students(course: Course, rows: list[Row] | None = None) -> dict[str, str]:
    """student → why their total is not final yet: a notebook not graded (its reason), or
    one whose grade a TA must still give in the Formgrader. Empty: every total is final. (A
    notebook not submitted is final: 0. nbgrader marks its empty grades "needs manual grade".)"""
    rows = class_rows(course) if rows is None else rows
    review = _needs_manual_grade(course, [row.student for row in rows])
    pending = {}
    for row in rows:
        for nb in NOTEBOOKS:
            if row.states[nb] == "unknown":
                pending[row.student] = f"{nb}: {NOT_AUTOGRADED}"
            elif row.states[nb] != MISSING and nb in review.get(row.student, ()):
                not_graded = row.states[nb] in (FAILED, STOPPED) and row.notes[nb]
                why = row.notes[nb][0] if not_graded else "needs a manual grade (Formgrader)"
                pending[row.student] = f"{nb}: {why}"
            else:
                continue
            break
    return pending


def _needs_manual_grade(course: Course, students: list[str]) -> dict[str, set[str]]:
    """student → the notebooks the gradebook says a TA must still grade by hand."""
    from nbgrader.api import MissingEntry

    found: dict[str, set[str]] = {}
    with course.gradebook() as gb:
        for student in students:
            for nb in NOTEBOOKS:
                try:
                    notebook = gb.find_submission_notebook(nb, ASSIGNMENT, student)
                except MissingEntry:
                    continue
                if notebook.needs_manual_grade:
                    found.setdefault(student, set()).add(nb)
    return found


def export_class(
    course: Course, *, canvas_column: str = ASSIGNMENT, ungraded_as_zero: bool = False
) -> tuple[Path, Path]:
    """Write grades.csv, grades_by_notebook.csv and grades_canvas.csv (``canvas_column``
    heads its points); returns the first two. A student of ``pending_students`` has an empty
    Canvas points cell unless ``ungraded_as_zero``."""
    from nbgrader.plugins import CsvExportPlugin

    from .lms import read_ids, write_canvas_csv
    from .table import neutralise_formulas, write_notebook_csv

    course.class_dir.mkdir(parents=True, exist_ok=True)
    rows = class_rows(course)
    pending = {} if ungraded_as_zero else pending_students(course, rows)
    totals = {row.student: None if row.student in pending else row.total for row in rows}
    max_total = rows[0].max_total if rows else 0.0
    with contextlib.ExitStack() as stack:
        grades = stack.enter_context(replaced_atomically(course.grades_csv))
        by_notebook = stack.enter_context(replaced_atomically(course.notebook_grades_csv))
        canvas = stack.enter_context(replaced_atomically(course.canvas_csv))
        with course.gradebook() as gb:
            CsvExportPlugin(to=str(grades), assignment=[ASSIGNMENT]).export(gb)
        add_lateness_column(grades, {row.student: row.lateness for row in rows})
        neutralise_formulas(grades)
        write_notebook_csv(rows, by_notebook)
        write_canvas_csv(canvas, totals, max_total, read_ids(course.lms_ids), canvas_column)
    return course.grades_csv, course.notebook_grades_csv


def add_lateness_column(path: Path, lateness: dict[str, str]) -> Path:
    """Append a ``lateness`` column to nbgrader's grades.csv (by its ``student_id``)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    if lines:
        student = lines[0].index("student_id")
        lines = [[*lines[0], "lateness"]] + [[*line, lateness.get(line[student], "")] for line in lines[1:]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(lines)
    return path
