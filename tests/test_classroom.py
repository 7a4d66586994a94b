"""The grading pipeline's pieces, without running nbgrader on notebooks (seconds in all).

The whole pipeline on the demo class is tests/test_grading_pipeline.py.
"""

from __future__ import annotations

import functools
import json
import operator
import os
from pathlib import Path

import nbformat
import pytest
from helpers import load_demo_module
from nbformat.v4 import new_code_cell, new_notebook, new_output

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS, gradebook_url
from backprop_ninja.grading import trust as grading_trust
from backprop_ninja.grading.classdir import Course, grading_environment, read_config, sqlite_url
from backprop_ninja.grading.gradebook import record
from backprop_ninja.grading.job import withdraw
from backprop_ninja.grading.reasons import failure_reason, interrupted_cells, success_notes
from backprop_ninja.grading.results import (
    NBGRADER,
    VERIFIER,
    Decision,
    GradedTest,
    GradingResult,
    NotebookGrade,
)
from backprop_ninja.grading.status import (
    FAILED,
    GRADED,
    MISSING,
    NotebookResult,
    StudentStatus,
    read_status,
    write_status,
)
from backprop_ninja.grading.table import (
    NOT_AUTOGRADED,
    format_table,
    read_notebook_csv,
    row_for,
    summary_line,
    write_notebook_csv,
)
from backprop_ninja.grading.trust import answer_cell_of

REPO = Path(__file__).resolve().parents[1]
NB1, NB2, NB3, NB4 = NOTEBOOKS


# nbgrader 0.9.6 with SQLAlchemy 2 warns on every query; it says nothing about our code.


# ------------------------------------------------------------------------ failure reasons
# Excerpts of nbgrader 0.9.6 logs, as the worker captures them for one notebook.
INVALID_JSON_LOG = """[INFO] Sanitizing /c/submitted/s/backprop_ninja/4_full_training.ipynb
[ERROR] There was an error processing assignment: /c/submitted/s/backprop_ninja
[ERROR] Traceback (most recent call last):
    json.decoder.JSONDecodeError: Unterminated string starting at: line 812 column 5 (char 24576)
    The above exception was the direct cause of the following exception:
    nbformat.reader.NotJSONError: Notebook does not appear to be JSON: '{\\n "cells": [...'
[ERROR] There was an error processing assignment 'backprop_ninja' for student 's'
"""
RENAMED_LOG = """[INFO] Converting notebook /c/submitted/s/backprop_ninja/2_fused_cross_entropy.ipynb
[WARNING] Cell 'my_cross_entropy' does not exist in the database
[ERROR] Traceback (most recent call last):
    jsonschema.exceptions.ValidationError: nbgrader cell does not have a grade_id
[ERROR] Notebook failed to validate; the nbgrader metadata may be corrupted.
"""
KERNEL_LOG = """[INFO] Autograding /c/autograded/s/backprop_ninja/3_fused_batchnorm.ipynb
[ERROR] Kernel died while waiting for execute reply.
[ERROR] There was an error processing assignment: /c/submitted/s/backprop_ninja
    nbclient.exceptions.DeadKernelError: Kernel died
[WARNING] Removing failed notebook: /c/autograded/s/backprop_ninja/3_fused_batchnorm.ipynb
"""
UNKNOWN_LOG = """[ERROR] There was an error processing assignment: /c/submitted/s/backprop_ninja
    PermissionError: [Errno 13] Permission denied: '/c/autograded/s'
    nbgrader.converters.base.NbGraderException: Please see the the above traceback
"""


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (INVALID_JSON_LOG, "invalid JSON"),
        (RENAMED_LOG, "cell 'my_cross_entropy' is not part of the assignment"),
        (KERNEL_LOG, "kernel died"),
        (
            "[ERROR] Notebook failed to validate; the nbgrader metadata may be corrupted.",
            "metadata of a cell was edited",
        ),
        ("nbgrader.preprocessors.execute.UnresponsiveKernelError", "stopped responding"),
        (UNKNOWN_LOG, "PermissionError: [Errno 13] Permission denied"),
        ("", "see the student's log"),
    ],
)
def test_failure_reason_names_the_cause(log, expected):
    assert expected in failure_reason(log)


def test_restored_and_interrupted_cells_become_notes(tmp_path):
    nb = new_notebook(
        cells=[
            new_code_cell(
                "while True: pass",
                metadata={"nbgrader": {"grade_id": "cross_entropy_backward"}},
                outputs=[new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])],
            ),
            new_code_cell(
                "slow()", outputs=[new_output("error", ename="CellTimeoutError", evalue="", traceback=[])]
            ),
            new_code_cell(
                "test()",
                metadata={"nbgrader": {"grade_id": "test_dlogits"}},
                outputs=[new_output("error", ename="NameError", evalue="", traceback=[])],
            ),
        ]
    )
    path = tmp_path / "graded.ipynb"
    nbformat.write(nb, str(path))
    assert interrupted_cells(path) == ["cross_entropy_backward", "cell 2"]
    log = "[WARNING] Missing grade cell test_dprobs encountered, adding to notebook\n"
    notes = success_notes(log, path, 30)
    assert notes == [
        "test cell test_dprobs had been deleted; it was put back and run",
        "stopped after 30 s (never ended): cross_entropy_backward, cell 2",
    ]
    assert success_notes("", tmp_path / "absent.ipynb", 30) == []


# ------------------------------------------------------------- each test's verdict, the grader's
def test_a_test_that_lost_points_says_why_in_the_graders_words():
    """Withdrawal and finding as the table and the gradebook comment say them, else the
    verifier's verdict, else how the test cell ended; a kept test says nothing."""
    autograded = nbformat.writes(
        new_notebook(
            cells=[
                new_code_cell(
                    "",
                    metadata={"nbgrader": {"grade_id": grade_id}},
                    outputs=[new_output("error", ename=ename)],
                )
                for grade_id, ename in (("test_dprobs", "GradeFailure"), ("test_dh", "✅ test_dh 1/1 <b>"))
            ]
        )
    ).encode()
    errors = grading_trust.cell_errors(autograded)
    assert errors == {"test_dprobs": "GradeFailure", "test_dh": "an error"}  # a forged name is not quoted
    tests = [
        GradedTest("test_dlogprobs", 1, 1),
        GradedTest("test_dcounts", 1, 1, withdrawn="verifier: dcounts on fresh inputs (n=7): off by n"),
        GradedTest("test_dlogits", 1, 0, finding="integrity: grad_logits uses autograd"),
        GradedTest("test_db2", 1, 0),
        GradedTest("test_dprobs", 1, 0),
        GradedTest("test_dh", 1, 0),
    ]
    verdicts = {
        "test_dlogprobs": (True, "dlogprobs is right on fresh inputs"),
        "test_db2": (False, "db2 on fresh inputs (n=7): shape (7, 27), expected (27,)"),
        "test_dprobs": (True, "dprobs is right on fresh inputs"),
    }
    reasons = grading_trust.grade_reasons(tests, verdicts, errors)
    assert reasons == {
        "test_dcounts": "points withdrawn — verifier: dcounts on fresh inputs (n=7): off by n",
        "test_dlogits": "integrity: grad_logits uses autograd",
        "test_db2": "db2 on fresh inputs (n=7): shape (7, 27), expected (27,)",
        "test_dprobs": "the test failed when your notebook ran (it stopped with GradeFailure): your "
        "function is right on the grader's fresh inputs, so run your notebook from the top to see "
        "what broke the test",
        "test_dh": "the test failed when your notebook ran (it stopped with an error)",
    }


def test_a_test_cell_shows_the_graders_verdict_instead_of_what_the_kernel_printed(tmp_path):
    """TestIndex, called as nbconvert calls it: the test cell's outputs (a forged ✅, a forged
    verdict display, printed seeds) give way to the grader's line; an answer cell keeps its own."""
    from backprop_ninja.course import VERDICT_MIME
    from backprop_ninja.grading.feedback import TestIndex

    nb2 = NOTEBOOKS[1]
    reason = "dlogits on fresh inputs (n=7): off by a factor of n"
    write_status(
        tmp_path, StudentStatus("ann", [NotebookResult(nb2, GRADED, reasons={"test_dlogits": reason})])
    )
    forged = [
        new_output("stream", name="stdout", text="✅ test_dlogits 5/5\nseeds=(2101, 2102, 2103)\n"),
        new_output("display_data", data={"text/plain": "✅", VERDICT_MIME: {"test": "X", "passed": True}}),
    ]
    meta = {"grade": True, "solution": False, "grade_id": "test_dlogits", "score": 0.0, "points": 5.0}
    test_cell = new_code_cell("test_on(CROSS_ENTROPY, cross_entropy_backward, case)", outputs=forged)
    test_cell.metadata["nbgrader"] = meta
    answer = new_code_cell("print('mine')", outputs=[new_output("stream", name="stdout", text="mine\n")])
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "grade_id": "cross_entropy_backward"}
    notebook = new_notebook(cells=[answer, test_cell])
    resources = {"nbgrader": {"student": "ann", "notebook": nb2}}
    notebook, resources = TestIndex(status_dir=str(tmp_path))(notebook, resources)
    shown = notebook.cells[1].outputs
    assert [(o.output_type, o.text) for o in shown] == [("stream", f"❌ dlogits 0/5 — {reason}\n")]
    assert notebook.cells[0].outputs[0].text == "mine\n"
    assert resources["backprop_ninja"]["lost"] == [
        {"id": "test_dlogits", "name": "dlogits", "result": f"0/5 — {reason}"}
    ]
    # Full marks: a ✅ and the points, whatever the cell printed.
    test_cell.metadata["nbgrader"]["score"] = 5.0
    test_cell.outputs = forged
    notebook, resources = TestIndex(status_dir=str(tmp_path))(new_notebook(cells=[test_cell]), resources)
    assert [o.text for o in notebook.cells[0].outputs] == ["✅ dlogits 5/5\n"]
    assert resources["backprop_ninja"]["lost"] == []


def test_the_feedback_preprocessor_runs_after_nbgrader_reads_the_grades():
    preprocessors = read_config().GenerateFeedback.preprocessors
    ours = preprocessors.index("backprop_ninja.grading.feedback.TestIndex")
    assert preprocessors.index("nbgrader.preprocessors.GetGrades") < ours


# ------------------------------------------------------------------------ configuration
def test_config_sets_the_course_layout_and_the_grading_rules():
    c = read_config()
    assert c.CourseDirectory.source_directory == "solutions"
    assert c.CourseDirectory.release_directory == "notebooks"
    assert Path(c.CourseDirectory.root) == REPO
    assert c.CourseDirectory.submitted_directory == "grader/class/submitted"
    assert c.OverwriteCells.add_missing_cells is True
    assert c.Execute.interrupt_on_timeout is True
    assert 0 < c.Execute.timeout <= 120
    assert c.CourseDirectory.db_url.startswith("sqlite:///")
    assert "timeout=30" in c.CourseDirectory.db_url


def test_the_database_url_comes_from_the_environment(monkeypatch, tmp_path):
    """As people write it (libpq's postgresql://), read with the pinned driver (psycopg 3), for
    the configured class and for any other class graded while it is set."""
    monkeypatch.setenv("BACKPROP_NINJA_DB_URL", "postgresql://grader@db.example.org/bpn")
    expected = "postgresql+psycopg://grader@db.example.org/bpn"
    assert read_config().CourseDirectory.db_url == expected
    assert Course.load().db_url == expected
    assert Course.load(root=tmp_path, class_dir="section-b").db_url == expected
    monkeypatch.delenv("BACKPROP_NINJA_DB_URL")
    assert Course.load().db_url == sqlite_url(REPO / "grader" / "gradebook.db")


def test_only_libpq_style_postgresql_urls_get_the_driver():
    assert gradebook_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert gradebook_url("POSTGRESQL://u@/db?host=/tmp/pg") == "postgresql+psycopg://u@/db?host=/tmp/pg"
    for unchanged in (
        "postgresql+psycopg2://u@h/db",
        "sqlite:////x/gradebook.db?timeout=30",
        "mysql://u@h/db",
    ):
        assert gradebook_url(unchanged) == unchanged


def test_another_class_keeps_its_own_gradebook_and_folders(tmp_path):
    course = Course.load(root=tmp_path, class_dir="demo")
    assert course.class_dir == tmp_path / "demo"
    assert course.db_url == sqlite_url(tmp_path / "demo" / "gradebook.db")
    config = course.config()
    assert config.CourseDirectory.root == str(tmp_path)
    assert (
        config.CourseDirectory.submitted_directory == "demo/submitted"
    )  # relative: nbgrader escapes the root
    assert config.CourseDirectory.db_url == course.db_url
    assert f"--NbGrader.config_file={course.config_file}" in course.cli_overrides()
    assert Course.load(
        root=tmp_path, class_dir=tmp_path.parent / "x"
    ).config().CourseDirectory.autograded_directory == str(tmp_path.parent / "x" / "autograded")
    (course.submitted / "bob" / ASSIGNMENT).mkdir(parents=True)
    (course.submitted / "ann" / ASSIGNMENT).mkdir(parents=True)
    (course.submitted / "stray-file.txt").write_text("")
    assert course.students() == ["ann", "bob"]


def test_shards_split_the_class_without_overlap():
    from backprop_ninja.grading.classdir import GradingError
    from backprop_ninja.grading.pipeline import select_shard

    students = [f"s{i:02d}" for i in range(10)][::-1]
    shards = [select_shard(students, (k, 3)) for k in (1, 2, 3)]
    assert shards[0] == ["s00", "s03", "s06", "s09"]
    assert sorted(functools.reduce(operator.iadd, shards, [])) == sorted(students)
    assert select_shard(students, None) == students
    with pytest.raises(GradingError):
        select_shard(students, (4, 3))


def test_grading_environment_finds_nbgraders_tools_and_keeps_notebook_4_short():
    env = grading_environment({"PATH": "/usr/bin"}, threads=1)
    assert env["PATH"].split(":")[0].endswith("bin")
    assert env["PATH"].endswith("/usr/bin")
    assert (Path(env["PATH"].split(":")[0]) / "alembic").exists()  # nbgrader creates gradebooks with it
    assert int(env["BACKPROP_NINJA_STEPS"]) <= 1000
    assert env["OMP_NUM_THREADS"] == "1"


def test_grading_environment_puts_the_notebooks_timing_cells_in_quick_mode(monkeypatch):
    """course.py names the variable without importing torch; timing.py reads it: one name."""
    from backprop_ninja import timing

    monkeypatch.delenv(timing.QUICK_VARIABLE, raising=False)
    assert not timing.quick()
    for name, value in grading_environment({"PATH": "/usr/bin"}).items():
        monkeypatch.setenv(name, value)
    assert timing.quick()


# ------------------------------------------------------------------- status and report
def sample_status() -> StudentStatus:
    return StudentStatus(
        "ann",
        [
            NotebookResult(
                NB1, GRADED, notes=["test cell test_dprobs had been deleted; it was put back and run"]
            ),
            NotebookResult(NB2, GRADED, withdrawn={"test_dlogits": "integrity: autograd"}),
            NotebookResult(NB3, FAILED, reason="the Python kernel died"),
            NotebookResult(NB4, MISSING, reason="not submitted"),
        ],
    )


def test_status_round_trips_and_every_zero_has_a_reason(tmp_path):
    status = sample_status()
    write_status(tmp_path, status)
    again = read_status(tmp_path, "ann")
    assert again == status
    assert not again.ok
    assert read_status(tmp_path, "nobody") is None
    assert again.result(NB3).messages() == ["NOT GRADED (0 points): the Python kernel died"]
    assert again.result(NB2).messages() == ["test_dlogits: points withdrawn — integrity: autograd"]
    assert again.result(NB4).messages() == ["not submitted"]


def test_table_and_csv_show_points_totals_and_notes(tmp_path):
    maxima = {NB1: 26.0, NB2: 5.0, NB3: 5.0, NB4: 10.0}
    rows = [
        row_for("ann", {NB1: 26.0, NB2: 0.0, NB3: 0.0, NB4: 0.0}, maxima, sample_status()),
        row_for(
            "bob",
            {NB1: 25.0, NB2: 5.0, NB3: 5.0, NB4: 10.0},
            maxima,
            StudentStatus("bob", [NotebookResult(nb, GRADED) for nb in NOTEBOOKS]),
        ),
        row_for("cy", dict.fromkeys(NOTEBOOKS), maxima, None),
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["student", "nb1", "nb2", "nb3", "nb4", "total"]
    assert lines[1].split() == ["(max)", "26", "5", "5", "10", "46"]
    assert lines[3].split() == ["ann", "26*", "0*", "0*", "0*", "26"]
    assert lines[4].split() == ["bob", "25", "5", "5", "10", "45"]
    assert lines[5].split() == ["cy", "—*", "—*", "—*", "—*", "0"]
    assert "ann nb3: NOT GRADED (0 points): the Python kernel died" in table
    assert f"cy nb1: {NOT_AUTOGRADED}" in table
    assert summary_line(rows[:2]) == (
        "2 students: 6 of 8 notebooks graded, 1 NOT graded, 1 not submitted; 1 students have notes (*)"
    )
    csv_rows = read_notebook_csv(write_notebook_csv(rows, tmp_path / "by_notebook.csv"))
    assert len(csv_rows) == 12
    ann3 = next(r for r in csv_rows if r["student_id"] == "ann" and r["notebook"] == NB3)
    assert ann3 == {
        "student_id": "ann",
        "notebook": NB3,
        "score": "0",
        "max_score": "5",
        "state": FAILED,
        "notes": "NOT GRADED (0 points): the Python kernel died",
        "lateness": "",  # no submission time: never late
    }


# ------------------------------------------------------------ withdrawing untrusted points
@pytest.fixture
def registered_course(tmp_path, monkeypatch):
    """A class whose gradebook knows notebooks 2 and 4 (their test and answer cells)."""
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", grading_environment()["PATH"])  # nbgrader runs alembic
    course = Course(root=tmp_path, class_dir=tmp_path / "class", db_url=sqlite_url(tmp_path / "gradebook.db"))
    with Gradebook(course.db_url) as gb:
        gb.add_assignment(ASSIGNMENT)
        gb.add_notebook(NB2, ASSIGNMENT)
        gb.add_grade_cell("test_dlogits", NB2, ASSIGNMENT, max_score=5, cell_type="code")
        gb.add_solution_cell("cross_entropy_backward", NB2, ASSIGNMENT)
        gb.add_notebook(NB4, ASSIGNMENT)
        for test, points in (("test_dC", 1), ("test_dW1", 1), ("test_training", 3)):
            gb.add_grade_cell(test, NB4, ASSIGNMENT, max_score=points, cell_type="code")
        gb.add_solution_cell("manual_backward", NB4, ASSIGNMENT)
    return course


def passed(test: str, points: float) -> GradedTest:
    return GradedTest(test, points, points, [Decision(NBGRADER, "passed")])


def test_withdrawn_points_are_zeroed_and_explained_on_the_answer_cell(registered_course):
    """The job withdraws in its result; the coordinator records a manual 0 and the comment."""
    nb2 = NotebookGrade(NB2, GRADED, tests=[passed("test_dlogits", 5)])
    nb4 = NotebookGrade(
        NB4,
        GRADED,
        tests=[passed("test_dC", 1), GradedTest("test_dW1", 1, 0.0), passed("test_training", 3)],
    )
    withdraw(
        nb4,
        {
            "test_dC": "verifier: dC is wrong on fresh inputs",
            "test_dW1": "integrity: autograd",  # earned nothing: shown, nothing to withdraw
            "test_training": "verifier: needs every gradient right",
            "test_unknown": "not a cell of this notebook",
        },
        None,
    )
    assert nb4.withdrawn() == {
        "test_dC": "verifier: dC is wrong on fresh inputs",
        "test_training": "verifier: needs every gradient right",
    }
    assert [d.source for d in nb4.tests[0].decisions] == [NBGRADER, VERIFIER]
    missing = [NotebookGrade(nb, MISSING) for nb in (NB1, NB3)]
    record(registered_course, GradingResult("ann", [*missing, nb2, nb4]))
    with registered_course.gradebook() as gb:
        assert gb.find_grade("test_dC", NB4, ASSIGNMENT, "ann").score == 0
        assert gb.find_grade("test_training", NB4, ASSIGNMENT, "ann").score == 0
        assert gb.find_grade("test_dW1", NB4, ASSIGNMENT, "ann").manual_score is None
        assert gb.find_submission_notebook(NB4, ASSIGNMENT, "ann").score == 0
        assert gb.find_submission_notebook(NB2, ASSIGNMENT, "ann").score == 5  # untouched
        comment = gb.find_comment("manual_backward", NB4, ASSIGNMENT, "ann").manual_comment
    assert comment.splitlines() == [
        "test_dC: 1 point(s) withdrawn — verifier: dC is wrong on fresh inputs",
        "test_dW1: integrity: autograd",
        "test_training: 3 point(s) withdrawn — verifier: needs every gradient right",
    ]
    assert nb4.tests[1].finding == "integrity: autograd"
    assert not nb4.tests[1].withdrawn
    status = read_status(registered_course.status, "ann")
    assert status is not None
    assert status.result(NB4).withdrawn == nb4.withdrawn()


def test_a_regrade_recorded_over_an_old_one_keeps_nothing_stale(registered_course):
    full = GradingResult("ann", [NotebookGrade(NB2, GRADED, tests=[passed("test_dlogits", 5)])])
    record(registered_course, full)
    failed = GradingResult("ann", [NotebookGrade(NB2, FAILED, reason="the kernel died")])
    record(registered_course, failed)
    with registered_course.gradebook() as gb:
        grade = gb.find_grade("test_dlogits", NB2, ASSIGNMENT, "ann")
        assert (grade.auto_score, grade.needs_manual_grade, grade.score) == (None, True, 0)


def test_a_regrade_keeps_a_tas_manual_scores_and_comment_lines_and_says_what_changed(registered_course):
    """What the Formgrader writes (Grade.manual_score, Comment.manual_comment) survives a
    regrade; the grader's own manual 0 and comment lines are rewritten, not kept as a TA's."""
    withdrawn = NotebookGrade(
        NB4, GRADED, tests=[passed("test_dC", 1), passed("test_dW1", 1), passed("test_training", 3)]
    )
    withdraw(withdrawn, {"test_dC": "verifier: dC is wrong on fresh inputs"}, None)
    first = record(
        registered_course,
        GradingResult("ann", [NotebookGrade(NB2, GRADED, tests=[passed("test_dlogits", 5)]), withdrawn]),
    )
    assert first.changes == []
    assert first.kept_manual == 0
    with registered_course.gradebook() as gb:  # the TA's work in the Formgrader
        gb.find_grade("test_training", NB4, ASSIGNMENT, "ann").manual_score = 2.0
        comment = gb.find_comment("manual_backward", NB4, ASSIGNMENT, "ann")
        comment.manual_comment += "\nTA: the schedule is fine, the loss is not"
        gb.db.commit()
    failed = NotebookGrade(NB2, FAILED, reason="invalid JSON")
    again = NotebookGrade(
        NB4, GRADED, tests=[passed("test_dC", 1), passed("test_dW1", 1), passed("test_training", 3)]
    )
    withdraw(again, {"test_dC": "verifier: dC is wrong on fresh inputs"}, None)
    status = record(registered_course, GradingResult("ann", [failed, again]))
    with registered_course.gradebook() as gb:
        assert gb.find_grade("test_training", NB4, ASSIGNMENT, "ann").score == 2.0  # the TA's, kept
        assert not gb.find_grade("test_training", NB4, ASSIGNMENT, "ann").needs_manual_grade
        assert gb.find_grade("test_dC", NB4, ASSIGNMENT, "ann").score == 0  # the grader's, again
        comment = gb.find_comment("manual_backward", NB4, ASSIGNMENT, "ann").manual_comment
    assert comment.splitlines() == [
        "test_dC: 1 point(s) withdrawn — verifier: dC is wrong on fresh inputs",
        "TA: the schedule is fine, the loss is not",
    ]
    assert status.kept_manual == 2
    assert status.changes == [(NB2, "test_dlogits", 5.0, 0.0)]


def test_the_demo_check_expects_the_no_sandbox_note_only_when_told(tmp_path, monkeypatch):
    """`make grade SANDBOX=no` passes its own check: with --no-sandbox every graded notebook
    must carry the note, and nothing else unexpected."""
    from nbgrader.api import Gradebook

    from backprop_ninja.grading.job import UNSANDBOXED_NOTE

    demo = load_demo_module()
    monkeypatch.setenv("PATH", grading_environment()["PATH"])
    course = Course(root=tmp_path, class_dir=tmp_path / "class", db_url=sqlite_url(tmp_path / "gradebook.db"))
    with Gradebook(course.db_url) as gb:
        gb.add_assignment(ASSIGNMENT)
        for nb in NOTEBOOKS:
            gb.add_notebook(nb, ASSIGNMENT)
            gb.add_grade_cell(f"test_{nb}", nb, ASSIGNMENT, max_score=2, cell_type="code")
    student = demo.DemoStudent("ann", {nb: demo.Change("graded", 2) for nb in NOTEBOOKS})
    notebooks = [
        NotebookGrade(nb, GRADED, notes=[UNSANDBOXED_NOTE], tests=[passed(f"test_{nb}", 2)])
        for nb in NOTEBOOKS
    ]
    record(course, GradingResult("ann", notebooks))
    assert demo.differences(course, [student], unsandboxed=True) == []
    assert any("unexpected notes" in p for p in demo.differences(course, [student]))
    record(
        course,
        GradingResult(
            "ann", [NotebookGrade(nb, GRADED, tests=[passed(f"test_{nb}", 2)]) for nb in NOTEBOOKS]
        ),
    )
    assert any("without a sandbox" in p for p in demo.differences(course, [student], unsandboxed=True))


def test_each_test_is_explained_on_the_answer_cell_of_its_function():
    assert answer_cell_of(NB1, "test_dcounts") == "grad_counts"
    assert answer_cell_of(NB2, "test_dlogits") == "cross_entropy_backward"
    assert answer_cell_of(NB3, "test_dhprebn") == "batchnorm_backward"
    assert answer_cell_of(NB4, "test_dbngain") == "manual_backward"
    assert answer_cell_of(NB4, "test_training") == "manual_backward"


# ----------------------------------------------------------------------------- the demo
def test_demo_expectations_add_up():
    demo = load_demo_module()
    assert demo.FULL == {NB1: 26, NB2: 5, NB3: 5, NB4: 10}
    assert {s.name for s in demo.DEMO} >= {"full_marks", "untouched"}
    assert demo.DEMO_BY_NAME["full_marks"].total == 46
    assert demo.DEMO_BY_NAME["untouched"].total == 0
    for student in demo.DEMO:
        for nb, change in student.changes.items():
            assert 0 <= change.points <= demo.FULL[nb]
            if change.points == 0 and "NOT GRADED" not in change.notes:
                assert change.story  # a wrong answer: graded normally, its story says why


def test_solution_markers_are_dropped_and_a_stale_mistake_is_refused():
    demo = load_demo_module()
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
    assert demo.solution_code(source) == "def f(x):\n    return 2 * x"
    nb = new_notebook(
        cells=[
            new_code_cell(
                "def f(x):\n    return 2 * x", metadata={"nbgrader": {"grade_id": "f", "solution": True}}
            )
        ]
    )
    assert "return x" in demo.replace_in("f", "return 2 * x", "return x")(nb).cells[0].source
    with pytest.raises(AssertionError, match="no longer applies"):
        demo.replace_in("f", "return 3 * x", "return x")(nb)


@pytest.fixture(scope="module")
def demo_texts():
    demo = load_demo_module()
    return demo, {s.name: demo.submission_texts(s, REPO) for s in demo.DEMO}


def test_every_demo_mistake_applies_to_the_current_notebooks(demo_texts):
    demo, texts = demo_texts
    full = texts["full_marks"]
    for student in demo.DEMO:
        if student.untouched:
            for nb in NOTEBOOKS:
                assert (
                    texts[student.name][nb] == (REPO / "notebooks" / ASSIGNMENT / f"{nb}.ipynb").read_text()
                )
            continue
        for nb in NOTEBOOKS:
            changed = texts[student.name][nb] != full[nb]
            assert changed == (nb in student.changes), (student.name, nb)


def test_full_marks_answers_are_the_solutions_without_markers(demo_texts):
    _demo, texts = demo_texts
    for nb in NOTEBOOKS:
        submitted = nbformat.reads(texts["full_marks"][nb], as_version=4)
        answers = [c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert answers
        assert all(
            "BEGIN SOLUTION" not in c.source and "NotImplementedError" not in c.source for c in answers
        )


def test_broken_demo_notebooks_are_broken_as_described(demo_texts):
    demo, texts = demo_texts
    for student in demo.DEMO:
        for nb, change in student.changes.items():
            if change.mutate_text is not None:
                with pytest.raises(json.JSONDecodeError):
                    json.loads(texts[student.name][nb])


def test_a_job_on_a_machine_that_cannot_sandbox_grades_nothing_and_says_why(monkeypatch):
    """A cluster worker without bubblewrap: the student's notebooks are not run there at all."""
    from backprop_ninja.grading.job import run_job
    from backprop_ninja.grading.results import GradingJob, Release
    from backprop_ninja.sandbox import build as sandbox

    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    sandbox.problem.cache_clear()  # it remembers its answer for the process
    job = GradingJob("ann", Release(b"", {}, 30), {NB1: b"{}"}, {NB2: "a link, not a notebook"})
    saved = dict(os.environ)  # a job sets up its process's environment for grading
    try:
        result = run_job(job)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sandbox.problem.cache_clear()
    assert [nb.state for nb in result.notebooks] == [FAILED, FAILED, MISSING, MISSING]
    assert "cannot sandbox" in result.notebooks[0].reason
    assert "bubblewrap" in result.notebooks[0].reason
    assert result.graded == 0
    assert not any(nb.autograded for nb in result.notebooks)
