"""The whole grading cycle against a real PostgreSQL server: autograde, feedback, export, and a
regrade that leaves nothing stale, with BACKPROP_NINJA_DB_URL=postgresql://… as an instructor
sets it. The result must be the SQLite gradebook's, cell by cell (the ``graded_demo`` class)."""

from __future__ import annotations

import csv

import pytest
from helpers import VERIFY_SEED, csv_rows, grade_cells, make_course_root

from backprop_ninja.course import DB_URL_VARIABLE, NOTEBOOKS
from backprop_ninja.grading.__main__ import main as classroom_main
from backprop_ninja.grading.classdir import Course
from backprop_ninja.grading.status import FAILED, read_status

NB1, NB2, NB3, NB4 = NOTEBOOKS

pytestmark = [pytest.mark.postgres, pytest.mark.pipeline, pytest.mark.sandbox, pytest.mark.notebooks]


# Full marks, an answer by autograd the integrity checks flag, notebooks nbgrader cannot grade.
STUDENTS = ("full_marks", "slips_dc_autograd", "broken_kernel_metadata")


def without_seconds(status):
    return [(r.notebook, r.state, r.reason, r.notes, r.withdrawn, r.findings) for r in status.notebooks]


def test_the_whole_cycle_on_postgresql_gives_the_sqlite_grades(
    postgres, graded_demo, demo_class_module, tmp_path, monkeypatch
):
    monkeypatch.setenv(DB_URL_VARIABLE, postgres.url)  # a plain postgresql:// URL, as people write it
    root = make_course_root(tmp_path)
    course = Course.load(root=root)
    assert course.db_url.startswith("postgresql+psycopg://")
    demo = [demo_class_module.DEMO_BY_NAME[name] for name in STUDENTS]
    demo_class_module.build(course, demo)
    options = ["--root", str(root), "--no-progress", "--verify-seed", str(VERIFY_SEED)]
    assert classroom_main(["grade", *options]) == 0  # autograde, feedback, export, table
    sqlite = graded_demo["course"]
    students = list(STUDENTS)
    assert {s: grade_cells(course, s) for s in students} == {s: graded_demo["cells"][s] for s in students}
    assert demo_class_module.differences(course, demo) == []
    for student in students:
        assert without_seconds(read_status(course.status, student)) == without_seconds(
            graded_demo["statuses"][student]
        )
        assert all(course.feedback_page(student, nb).exists() for nb in NOTEBOOKS)
    for name in ("grades.csv", "grades_by_notebook.csv"):
        assert csv_rows((course.class_dir / name).read_text()) == csv_rows(graded_demo["csv"][name], students)
    assert sqlite.db_url.startswith("sqlite:")  # the comparison is with SQLite
    # The rows are in the server (asked with its own client, not through the course's code).
    rows = postgres.psql("select count(*) from submitted_assignment")
    assert int(rows) == len(students)

    # A regrade: one notebook re-submitted, damaged. Its old points must not survive; the
    # student's other notebooks keep exactly their grades.
    student = "full_marks"
    before = grade_cells(course, student)
    path = course.submitted_notebook(student, NB3)
    path.write_text(path.read_text()[:1000])
    assert classroom_main(["autograde", *options, "--students", student]) == 0
    after = grade_cells(course, student)
    assert before[(NB3, "test_dhprebn")] == 5
    assert after[(NB3, "test_dhprebn")] == 0
    assert {k: v for k, v in after.items() if k[0] != NB3} == {k: v for k, v in before.items() if k[0] != NB3}
    status = read_status(course.status, student)
    assert status is not None
    assert status.result(NB3).state == FAILED
    assert int(postgres.psql("select count(*) from submitted_assignment")) == len(students)
    assert classroom_main(["export", "--root", str(root)]) == 0
    with open(course.grades_csv, newline="", encoding="utf-8") as handle:
        totals = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert totals[student] == 41  # 46 minus notebook 3's 5 points
    assert totals == {s.name: s.total for s in demo} | {student: 41}
