"""The grade table (student × notebook), its notes, and the per-notebook CSV.

Scores come from the gradebook (the single truth, including withdrawn points, any manual
grading done since, and how late the submission was — ``lateness.py``); states and notes come
from status/<student>.json.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..course import ASSIGNMENT, NOTEBOOKS
from ..text import spreadsheet_cell
from .lateness import lateness_text
from .status import GRADED, NotebookResult, StudentStatus, read_status

NOT_AUTOGRADED = "not autograded yet (run `make autograde`)"


@dataclass
class Row:
    """One student: points and notes per notebook."""

    student: str
    points: dict[str, float | None]  # None: no submission in the gradebook
    max_points: dict[str, float]
    states: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # notebook → lines
    seconds_late: float = 0.0  # after the due date (0: on time, or no time or no due date)
    penalty: float = 0.0  # points taken for lateness (only where a penalty is configured)

    @property
    def total(self) -> float:
        """The assignment's points, less any late-submission penalty."""
        return max(0.0, sum(p or 0.0 for p in self.points.values()) - self.penalty)

    @property
    def lateness(self) -> str:
        """ "2 h 13 min late", or "" on time."""
        return lateness_text(self.seconds_late)

    @property
    def max_total(self) -> float:
        return sum(self.max_points.values())


def short_name(notebook: str) -> str:
    """ "1_atomic_backprop" → "nb1"."""
    return f"nb{NOTEBOOKS.index(notebook) + 1}"


def class_rows(course, students: list[str] | None = None) -> list[Row]:
    """A row per student, from the gradebook and the status files."""
    from nbgrader.api import MissingEntry

    students = list(students) if students else course.students()
    rows = []
    with course.gradebook() as gb:
        try:
            max_points = {nb: float(gb.find_notebook(nb, ASSIGNMENT).max_score) for nb in NOTEBOOKS}
        except MissingEntry:
            from .classdir import GradingError

            raise GradingError(
                f"{ASSIGNMENT} is not in the gradebook {course.db_url} yet: run `make autograde` first"
            ) from None
        for student in students:
            points: dict[str, float | None] = {}
            for nb in NOTEBOOKS:
                try:
                    points[nb] = float(gb.find_submission_notebook(nb, ASSIGNMENT, student).score)
                except MissingEntry:
                    points[nb] = None
            row = row_for(student, points, max_points, read_status(course.status, student))
            try:
                submission = gb.find_submission(ASSIGNMENT, student)
            except MissingEntry:
                pass
            else:
                row.seconds_late = float(submission.total_seconds_late)
                row.penalty = float(submission.late_submission_penalty or 0.0)
            rows.append(row)
    return rows


def row_for(student: str, points: dict, max_points: dict, status: StudentStatus | None) -> Row:
    row = Row(student, points, max_points)
    for nb in NOTEBOOKS:
        result: NotebookResult | None = status.result(nb) if status else None
        row.states[nb] = result.state if result else "unknown"
        row.notes[nb] = result.messages() if result else [NOT_AUTOGRADED]
    return row


def _points(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def format_table(rows: list[Row]) -> str:
    """The table a TA reads: points per notebook (``*``: see the notes below), total (less a
    late penalty, if one is configured), how late (a column only when someone was), notes."""
    if not rows:
        return "(no students)"
    width = max(12, *(len(r.student) for r in rows))
    columns = [short_name(nb) for nb in NOTEBOOKS] + ["total"]
    maxima = [rows[0].max_points[nb] for nb in NOTEBOOKS] + [rows[0].max_total]
    late = any(row.lateness for row in rows)
    lines = [
        f"{'student':<{width}}  " + "  ".join(f"{c:>6}" for c in columns) + ("  late" if late else ""),
        f"{'(max)':<{width}}  " + "  ".join(f"{m:>6g}" for m in maxima),
        "-" * (width + 2 + 8 * len(columns) - 2 + (18 if late else 0)),
    ]
    for row in rows:
        cells = []
        for nb in NOTEBOOKS:
            mark = "*" if row.notes[nb] else " "
            cells.append(f"{_points(row.points[nb]):>5}{mark}")
        cells.append(f"{row.total:>6g}")
        if row.lateness:
            cells.append(row.lateness + (f" (−{row.penalty:g} points)" if row.penalty else ""))
        lines.append(f"{row.student:<{width}}  " + "  ".join(cells))
    notes = format_notes(rows)
    if notes:
        lines += ["", "* Notes", notes]
    return "\n".join(lines)


def format_notes(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        for nb in NOTEBOOKS:
            for note in row.notes[nb]:
                lines.append(f"  {row.student} {short_name(nb)}: {note}")
    return "\n".join(lines)


NOTEBOOK_CSV_FIELDS = ("student_id", "notebook", "score", "max_score", "state", "notes", "lateness")


def write_notebook_csv(rows: list[Row], path: Path) -> Path:
    """One line per student and notebook: score, max, state (graded/failed/stopped/missing),
    notes (``; ``-separated) — so that a failed notebook's 0 always says why — and how late
    the submission was ("2 h 13 min late"; empty on time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(NOTEBOOK_CSV_FIELDS)
        for row in rows:
            for nb in NOTEBOOKS:
                writer.writerow(
                    [
                        spreadsheet_cell(row.student),
                        nb,
                        _points(row.points[nb]) if row.points[nb] is not None else "",
                        f"{row.max_points[nb]:g}",
                        row.states[nb],
                        spreadsheet_cell("; ".join(row.notes[nb])),
                        row.lateness,
                    ]
                )
    return path


def read_notebook_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_line(rows: list[Row]) -> str:
    states = [r.states[nb] for r in rows for nb in NOTEBOOKS]
    graded = states.count(GRADED)
    missing = states.count("missing")
    failed = len(states) - graded - missing
    noted = sum(1 for r in rows if any(r.notes[nb] for nb in NOTEBOOKS))
    parts = [f"{len(rows)} students: {graded} of {len(states)} notebooks graded"]
    if failed:
        parts.append(f"{failed} NOT graded")
    if missing:
        parts.append(f"{missing} not submitted")
    text = ", ".join(parts)
    return text + (f"; {noted} students have notes (*)" if noted else "")


def neutralise_formulas(path: Path) -> Path:
    """Rewrite a CSV written by another tool (nbgrader's grades.csv) so that no cell is read
    as a formula (``spreadsheet_cell``): its student ids are the students' own text."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[spreadsheet_cell(cell) for cell in line] for line in lines])
    return path
