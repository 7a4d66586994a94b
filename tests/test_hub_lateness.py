"""Late submissions from the hub's exchange are marked with their lateness (issue 27.3).

The due date is recorded as ``make hub-release DUEDATE=…`` records it; two students hand in
notebook 2 through nbgrader's exchange, one before the due date and one 2 h 13 min after it;
the real collect, sandboxed autograde, feedback, export and class report follow. The late one
is marked in the table, both CSV files, the feedback page and the class report; the one on
time nowhere. No points are taken unless nbgrader's late-submission plugin is configured —
here the class configures ``penalty_method = "zero"``, and the course's own configuration
(which configures none) takes nothing from the same gradebook.
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import nbformat
import pytest
from helpers import VERIFY_SEED

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS, REPO_ROOT
from backprop_ninja.grading import Course, autograde_class, class_rows, export_class, feedback_class
from backprop_ninja.grading.class_report import write_report
from backprop_ninja.grading.classdir import CONFIG_FILE
from backprop_ninja.grading.collect import collect_exchange
from backprop_ninja.grading.lateness import assign_late_penalties, lateness_text
from backprop_ninja.grading.table import format_table, read_notebook_csv
from backprop_ninja.hub.exchange import release_assignment

NB2 = NOTEBOOKS[1]
DUE = "2026-03-01 10:00:00 UTC"
ON_TIME = "2026-03-01 09:59:00.000000 UTC"
LATE = "2026-03-01 12:13:30.000000 UTC"  # 2 h 13 min 30 s after the due date


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, ""),
        (None, ""),
        (2 * 3600 + 13 * 60 + 30, "2 h 13 min late"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h late"),
        (7200, "2 h late"),
        (45, "45 s late"),
        (0.2, "1 s late"),  # late is late, however little
        (61, "1 min late"),
    ],
)
def test_lateness_reads_at_a_glance(seconds, said):
    assert lateness_text(seconds) == said


def test_a_regrade_keeps_the_submission_time_and_a_tas_extension(tmp_path, monkeypatch):
    """The coordinator records the time of timestamp.txt with the submission; an extension a TA
    granted (nbgrader's ``grant_extension``) is kept when the student is graded again."""
    from nbgrader.api import Gradebook

    from backprop_ninja.grading.classdir import grading_environment, sqlite_url
    from backprop_ninja.grading.gradebook import record
    from backprop_ninja.grading.results import Decision, GradedTest, GradingResult, NotebookGrade
    from backprop_ninja.grading.status import GRADED

    monkeypatch.setenv("PATH", grading_environment()["PATH"])  # nbgrader runs alembic
    course = Course(root=tmp_path, class_dir=tmp_path / "class", db_url=sqlite_url(tmp_path / "gradebook.db"))
    with Gradebook(course.db_url) as gb:
        gb.add_assignment(ASSIGNMENT, duedate=DUE)
        for notebook in NOTEBOOKS:  # the table reads every notebook's maximum
            gb.add_notebook(notebook, ASSIGNMENT)
        gb.add_grade_cell("test_dlogits", NB2, ASSIGNMENT, max_score=5, cell_type="code")
    folder = course.submitted / "ann" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text(LATE)
    graded = GradedTest("test_dlogits", 5, 5.0, [Decision("nbgrader", "passed")])
    result = GradingResult("ann", [NotebookGrade(NB2, GRADED, tests=[graded])])

    record(course, result)
    (row,) = class_rows(course, ["ann"])
    assert (row.lateness, row.total) == ("2 h 13 min late", 5)  # no penalty configured
    with course.gradebook() as gb:
        gb.grant_extension(ASSIGNMENT, "ann", hours=3)
    record(course, result)  # graded again
    (row,) = class_rows(course, ["ann"])
    assert row.lateness == ""  # within the extended due date
    with course.gradebook() as gb:
        submission = gb.find_submission(ASSIGNMENT, "ann")
        assert submission.extension.total_seconds() == 3 * 3600
        assert str(submission.timestamp) == "2026-03-01 12:13:30"


def right_notebook_2() -> nbformat.NotebookNode:
    """The released notebook 2 with the solution's answer in its answer cell."""
    released = nbformat.read(REPO_ROOT / "notebooks" / ASSIGNMENT / f"{NB2}.ipynb", as_version=4)
    solution = nbformat.read(REPO_ROOT / "solutions" / ASSIGNMENT / f"{NB2}.ipynb", as_version=4)
    (answer,) = [c.source for c in solution.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for cell in released.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answer
    return released


def hand_in(inbound: Path, student: str, when: str) -> None:
    """A submission as ``nbgrader submit`` leaves it in the exchange: the notebook and the
    time it was handed in."""
    folder = inbound / f"{student}+{ASSIGNMENT}+{when}"
    folder.mkdir(parents=True)
    nbformat.write(right_notebook_2(), folder / f"{NB2}.ipynb")
    (folder / "timestamp.txt").write_text(when)


def page_text(path: Path) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))).split())


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_late_submission_is_marked_with_its_lateness_from_collect_to_report(course_root, monkeypatch):
    config = course_root / "nbgrader_config.py"  # the course's configuration, with a penalty
    config.write_text(
        f"c = get_config()\nload_subconfig({str(CONFIG_FILE)!r})\n"
        "c.LateSubmissionPlugin.penalty_method = 'zero'\n"
    )
    course = Course.load(root=course_root, config_file=config)
    exchange = course_root.parent / "exchange"
    release_assignment(course, exchange, DUE)  # what `make hub-release DUEDATE=…` does
    inbound = exchange / ASSIGNMENT / "inbound"
    hand_in(inbound, "ann", ON_TIME)
    hand_in(inbound, "bob", LATE)
    monkeypatch.setenv("BACKPROP_NINJA_EXCHANGE", str(exchange))

    collect_exchange(course)
    autograde_class(course, workers=1, verify_seed=VERIFY_SEED, progress=False)
    feedback_class(course, workers=1)
    export_class(course)
    report, _ = write_report(course)

    rows = {row.student: row for row in class_rows(course)}
    assert rows["ann"].points[NB2] == rows["bob"].points[NB2] == 5  # both answers are right
    assert (rows["ann"].lateness, rows["ann"].total) == ("", 5)
    assert (rows["bob"].lateness, rows["bob"].penalty, rows["bob"].total) == ("2 h 13 min late", 5, 0)
    grid = format_table(list(rows.values())).split("* Notes")[0]  # the table, without its notes
    table = {line.split()[0]: line for line in grid.splitlines() if line.strip()}
    assert "2 h 13 min late" in table["bob"]
    assert "late" not in table["ann"]

    by_notebook = {(r["student_id"], r["notebook"]): r for r in read_notebook_csv(course.notebook_grades_csv)}
    assert by_notebook["bob", NB2]["lateness"] == "2 h 13 min late"
    assert by_notebook["ann", NB2]["lateness"] == ""
    with open(course.grades_csv, newline="", encoding="utf-8") as handle:
        grades = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert grades["bob"]["lateness"] == "2 h 13 min late"
    assert grades["ann"]["lateness"] == ""
    assert grades["bob"]["timestamp"].startswith("2026-03-01 12:13:30")  # nbgrader's own columns
    assert grades["bob"]["duedate"].startswith("2026-03-01 10:00:00")
    assert (float(grades["bob"]["late_submission_penalty"]), float(grades["bob"]["score"])) == (5, 0)
    assert (float(grades["ann"]["late_submission_penalty"]), float(grades["ann"]["score"])) == (0, 5)

    late_page = page_text(course.feedback / "bob" / ASSIGNMENT / f"{NB2}.html")
    assert "Handed in 2 h 13 min late (after the due date)" in late_page
    assert "Late submission penalty" in late_page
    on_time_page = page_text(course.feedback / "ann" / ASSIGNMENT / f"{NB2}.html")
    assert "Handed in" not in on_time_page
    assert "Late submission penalty" not in on_time_page

    late_section = page_text(report).split("Late submissions")[1].split("Grading time")[0]
    assert "bob 2 h 13 min late 5" in late_section
    assert "ann" not in late_section

    # The course's own configuration configures no penalty: the same late submission keeps its points.
    plain = Course.load(root=course_root)
    with plain.gradebook() as gb:
        assert assign_late_penalties(plain, gb, "bob") == 0
        gb.db.commit()
    rows = {row.student: row for row in class_rows(plain)}
    assert (rows["bob"].lateness, rows["bob"].penalty, rows["bob"].total) == ("2 h 13 min late", 0, 5)
