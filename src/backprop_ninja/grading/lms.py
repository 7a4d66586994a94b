"""The class's LMS identities, kept at collection, and grades in the layout an LMS imports.

``make collect ZIP=…`` reads each file name of a Canvas download, which carries the student's
Canvas user id (``<login>_[LATE_]<user id>_<submission id>_<notebook>.ipynb``);
``collect.LmsCollectorPlugin`` records it here (``<class>/lms_ids.json``: student → user id
and login). ``make export`` then writes ``grades_canvas.csv`` in the layout of Canvas's
gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, one column of points
(with Canvas's "Points Possible" row). Canvas matches a row by ID (the user id) or, failing
that, by SIS Login ID: a student with no recorded user id (collected from nbgrader's
exchange, whose student ids are JupyterHub logins) gets the student id as SIS Login ID.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..text import spreadsheet_cell

CANVAS_FIELDS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "    Points Possible"  # Canvas's own export names its second row so


def read_ids(path: Path) -> dict[str, dict[str, str]]:
    """student id → {"user_id": …, "login": …} ({} when nothing was recorded)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data.items() if isinstance(v, dict)}


def record_id(path: Path, student: str, user_id: str, login: str) -> None:
    """Remember a student's LMS user id (a later collection adds to the earlier ones)."""
    path = Path(path)
    ids = read_ids(path)
    ids[student] = {"user_id": user_id, "login": login}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(ids, indent=1, sort_keys=True), encoding="utf-8")
    partial.replace(path)


def canvas_rows(
    totals: dict[str, float | None], max_total: float, ids: dict[str, dict[str, str]], column: str
) -> list[dict]:
    """The rows of the Canvas import, "Points Possible" first, then one per student; a total
    of None (not graded yet) leaves the points cell empty, which Canvas leaves as it was."""
    rows = [{"Student": POINTS_POSSIBLE, **dict.fromkeys(CANVAS_FIELDS[1:], ""), column: f"{max_total:g}"}]
    for student in sorted(totals):
        known = ids.get(student, {})
        rows.append(
            {
                "Student": spreadsheet_cell(student),
                "ID": spreadsheet_cell(known.get("user_id", "")),
                "SIS User ID": "",
                "SIS Login ID": "" if known else spreadsheet_cell(student),
                "Section": "",
                column: "" if totals[student] is None else f"{totals[student]:g}",
            }
        )
    return rows


def write_canvas_csv(
    path: Path, totals: dict[str, float | None], max_total: float, ids: dict, column: str
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*CANVAS_FIELDS, column])
        writer.writeheader()
        writer.writerows(canvas_rows(totals, max_total, ids, column))
    return path
