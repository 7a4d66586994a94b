"""The real pipeline on a hostile notebook: with the sandbox on, nothing gets out; with
``--no-sandbox``, the table, the CSV and the feedback say the class was graded without one."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from backprop_ninja.classroom import Course, autograde_class, export_class, feedback_class
from backprop_ninja.classroom.job import UNSANDBOXED_NOTE
from backprop_ninja.classroom.report import class_rows, format_table
from backprop_ninja.course import NOTEBOOKS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]
NB2 = NOTEBOOKS[1]
TOKEN = "ghp_instructors_secret_token"


def hostile_cells(course: Course, canary: Path, late_canary: Path, marker: str) -> list[str]:
    """What a student who has read this repository would try, with the real absolute paths."""
    secrets_to_read = [
        course.source_notebook(NB2).resolve(),  # the solution
        Path(course.db_url.removeprefix("sqlite:///").split("?")[0]),  # the gradebook
        course.submitted_notebook("classmate", NB2),  # another student's work
    ]
    return [
        f"""
import os
for path in {[str(p) for p in secrets_to_read]!r}:
    try:
        print("READ", path, len(open(path, "rb").read()))
    except OSError:
        print("blocked", path)
print("TOKEN" if any("{TOKEN}" in value for value in os.environ.values()) else "no token")
""",
        f"""
try:
    open({str(canary)!r}, "w").write("overwritten")
except OSError:
    print("write blocked")
""",
        'print("x" * 30_000_000)  # one line of 30 MB: nbgrader caps lines, the course caps bytes',
        f"""
import subprocess
subprocess.Popen(["sh", "-c", "sleep 3; echo late > {late_canary}", "{marker}"], start_new_session=True)
""",
    ]


def submit(course: Course, student: str, extra_cells: list[str], notebook=None) -> None:
    notebook = notebook or nbformat.read(course.release_notebook(NB2), as_version=4)
    notebook.cells += [nbformat.v4.new_code_cell(code) for code in extra_cells]
    path = course.submitted_notebook(student, NB2)
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, path)


def test_a_hostile_notebook_reads_writes_and_leaves_nothing(course_root, monkeypatch):
    course = Course.load(root=course_root)
    canary = Path(tempfile.mkdtemp(prefix="canary-")) / "gradebook-copy.db"
    canary.write_text("original")
    late_canary = canary.with_name("late.txt")
    marker = f"hostile-{os.getpid()}"
    submit(course, "classmate", [])
    submit(course, "mallory", hostile_cells(course, canary, late_canary, marker))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    try:
        autograde_class(course, workers=1, verify_seed=1, progress=False)
        outputs = "".join(
            output.get("text", "")
            for cell in nbformat.read(course.autograded_notebook("mallory", NB2), as_version=4).cells
            if cell.cell_type == "code"
            for output in cell.outputs
        )
        assert "READ" not in outputs and outputs.count("blocked") == 4, outputs
        assert "no token" in outputs and TOKEN not in outputs
        assert "[output removed by the grader: " in outputs
        assert course.autograded_notebook("mallory", NB2).stat().st_size < 3 * 2**20
        assert canary.read_text() == "original"
        time.sleep(4)  # the detached process would have written by now
        assert not late_canary.exists()
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""
    finally:
        shutil.rmtree(canary.parent, ignore_errors=True)


def test_grading_without_the_sandbox_says_so_everywhere(course_root):
    course = Course.load(root=course_root)
    submit(course, "trusted", [])
    autograde_class(course, workers=1, verify_seed=1, progress=False, sandboxed=False)
    feedback_class(course, workers=1)
    export_class(course)
    assert UNSANDBOXED_NOTE in format_table(class_rows(course))
    with open(course.notebook_grades_csv, newline="", encoding="utf-8") as handle:
        notes = {row["notebook"]: row["notes"] for row in csv.DictReader(handle)}
    assert UNSANDBOXED_NOTE in notes[NB2]
    for notebook in NOTEBOOKS:
        page = course.feedback_page("trusted", notebook).read_text(encoding="utf-8")
        assert "graded WITHOUT a sandbox" in page


def test_checks_that_crash_fail_closed(course_root, demo_class_module):
    """A right answer whose answer cell makes the integrity scan recurse too deep: nbgrader's
    points are not kept by default — the notebook waits for a TA with 0 automatic points."""
    course = Course.load(root=course_root)
    notebook = demo_class_module.filled_notebook(course.release_notebook(NB2), course.source_notebook(NB2))
    answer = demo_class_module.find_cell(notebook, "cross_entropy_backward")
    answer.source += "\n_ = " + " + ".join(["1"] * 600) + "\n"  # runs fine; too deep for the scan
    submit(course, "deep", [], notebook)
    status = autograde_class(course, workers=1, verify_seed=1, progress=False)["deep"]
    result = status.result(NB2)
    assert result is not None and "test_dlogits" in result.withdrawn
    assert "could not run (RecursionError" in result.withdrawn["test_dlogits"]
    with course.gradebook() as gb:
        grade = gb.find_grade("test_dlogits", NB2, "backprop_ninja", "deep")
        assert grade.auto_score == grade.max_score > 0  # nbgrader gave the points...
        assert grade.score == 0 and grade.needs_manual_grade  # ...and they wait for a TA


def test_links_in_a_submission_are_never_followed(course_root):
    course = Course.load(root=course_root)
    linked = course.submitted_notebook("linker", NB2)
    linked.parent.mkdir(parents=True)
    linked.symlink_to(course.source_notebook(NB2).resolve())  # "my" notebook is the solution
    submit(course, "extra", [])
    (course.submitted_notebook("extra", NB2).parent / "data.bin").symlink_to("/dev/zero")
    statuses = autograde_class(course, workers=1, verify_seed=1, progress=False)
    for student, why in (("linker", "is a link"), ("extra", "links or special files (data.bin)")):
        result = statuses[student].result(NB2)
        assert result is not None and result.state == "failed" and why in result.reason
        assert not course.autograded_notebook(student, NB2).exists()
