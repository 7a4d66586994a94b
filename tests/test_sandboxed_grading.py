"""The real pipeline on a hostile notebook: with the sandbox on, nothing gets out; with
``--no-sandbox``, the table, the CSV and the feedback say the class was graded without one."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from backprop_ninja.course import NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class, export_class, feedback_class
from backprop_ninja.grading.job import UNSANDBOXED_NOTE
from backprop_ninja.grading.kernels import CONSOLE_TAIL_BYTES
from backprop_ninja.grading.table import class_rows, format_table

pytestmark = [pytest.mark.pipeline, pytest.mark.sandbox, pytest.mark.notebooks]
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
        'print("x" * 10_000_000)  # one line of 10 MB: nbgrader caps lines, the course caps bytes',
        """
import os, sys
console = sys.stderr._original_stdstream_copy  # the kernel's own stderr, not the notebook's
written = 0
try:
    while written < 2**31:
        written += os.write(console, b"z" * 2**20)
except OSError as error:
    print("console stopped:", error.strerror)
""",
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
        assert "READ" not in outputs, outputs
        assert outputs.count("blocked") == 4, outputs
        assert "no token" in outputs
        assert TOKEN not in outputs
        assert "[output removed by the grader: " in outputs
        assert course.autograded_notebook("mallory", NB2).stat().st_size < 3 * 2**20
        assert canary.read_text() == "original"
        assert "console stopped: File too large" in outputs
        log = (course.logs / "mallory.log").read_text(encoding="utf-8")
        assert 0 < log.count("z" * 1000) <= CONSOLE_TAIL_BYTES // 1000  # a tail, not the flood
        # The detached writer ends either way: killed with its sandbox, or after writing.
        deadline = time.monotonic() + 60
        while subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout:
            assert time.monotonic() < deadline, "the detached process outlived grading"
            time.sleep(0.1)
        assert not late_canary.exists()
    finally:
        shutil.rmtree(canary.parent, ignore_errors=True)


def flooded_notebook(course: Course, flood: str) -> nbformat.NotebookNode:
    """The released notebook 2 (its answer left undone: test_dlogits fails) with ``flood``
    run before its first cell."""
    notebook = nbformat.read(course.release_notebook(NB2), as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(flood))
    return notebook


def test_a_flood_of_output_never_hides_a_failing_test(course_root):
    """Past the notebook's 2 MiB of outputs, the rest give way to a notice — but never the
    error of a failing test: nbgrader would read its absence as a pass."""
    course = Course.load(root=course_root)
    flood = """
from IPython.display import display
print("x" * 2**20)  # one output of 1 MiB: its head is kept
for _ in range(60):  # 60 outputs of 60 KB each: 2 MiB are kept
    display({"text/plain": "y" * 60_000}, raw=True)
"""
    submit(course, "flooder", [], flooded_notebook(course, flood))
    autograde_class(course, workers=1, verify_seed=1, progress=False)
    autograded = nbformat.read(course.autograded_notebook("flooder", NB2), as_version=4)
    test_cell = next(
        c for c in autograded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_dlogits"
    )
    assert [o.output_type for o in test_cell.outputs if o.output_type == "error"] == ["error"]
    with course.gradebook() as gb:
        assert gb.find_grade("test_dlogits", NB2, "backprop_ninja", "flooder").auto_score == 0
    texts = [o.get("text", "") for c in autograded.cells if c.cell_type == "code" for o in c.outputs]
    assert "[output removed by the grader: this notebook's outputs are over 2 MiB]\n" in texts
    assert course.autograded_notebook("flooder", NB2).stat().st_size < 3 * 2**20


def test_a_notebook_of_megabytes_of_code_is_graded_by_a_ta_and_its_feedback_is_short(course_root):
    """300 KB of code in one cell: the scan refuses to parse it (the notebook waits for a TA)
    and the feedback page shows its head (highlighting it all would take nbconvert ~25 s)."""
    course = Course.load(root=course_root)
    dump = "table = [" + "0," * 150_000 + "]\n"
    notebook = nbformat.read(course.release_notebook(NB2), as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(dump))
    submit(course, "dumper", [], notebook)
    result = autograde_class(course, workers=1, verify_seed=1, progress=False)["dumper"].result(NB2)
    assert result is not None
    assert result.state == "graded"
    assert "too large to check" in " ".join([*result.findings.values(), *result.withdrawn.values()])
    feedback_class(course, workers=1)
    page = course.feedback_page("dumper", NB2).read_text(encoding="utf-8")
    assert "KiB more of this cell not shown in feedback" in page
    assert len(page.encode()) < 2**20


def test_a_notebook_of_thousands_of_cells_is_refused_before_anything_runs(course_root):
    course = Course.load(root=course_root)
    submit(course, "cellular", ["x = 1"] * 5000)
    result = autograde_class(course, workers=1, verify_seed=1, progress=False)["cellular"].result(NB2)
    assert result is not None
    assert result.state == "failed"
    assert "cells, over 1,000" in result.reason
    assert not course.autograded_notebook("cellular", NB2).exists()


# The grading job run by hand, in a process of its own, reporting its peak memory.
JOB_DRIVER = """
import resource, sys
from pathlib import Path
from backprop_ninja.grading import Course, gradebook
from backprop_ninja.grading.job import run_job
from backprop_ninja.grading.pipeline import read_submission
from backprop_ninja.grading.results import GradingJob

course = Course.load(root=Path(sys.argv[1]))
gradebook.register_assignment(course)
files, refused = read_submission(course, sys.argv[2])
result = run_job(GradingJob(sys.argv[2], gradebook.release(course), files, refused, verify_seed=1))
print(result.notebook(sys.argv[3]).reason)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_a_flood_of_a_gigabyte_costs_the_grader_no_memory(course_root):
    """A kernel that prints a gigabyte as fast as it can: the grading process holds a few
    messages of it at a time (ZeroMQ's queue and message size capped), not the gigabyte."""
    course = Course.load(root=course_root)
    submit(course, "flooder", [], flooded_notebook(course, "for _ in range(1024):\n    print('z' * 2**20)"))
    job = subprocess.run(
        [sys.executable, "-c", JOB_DRIVER, str(course_root), "flooder", NB2],
        capture_output=True,
        text=True,
        check=True,
    )
    reason, peak_bytes = job.stdout.strip().splitlines()[-2:]
    assert int(peak_bytes) < 2**30, f"the grading process peaked at {int(peak_bytes) // 2**20} MiB"
    assert "more output than the grader accepts" in reason


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
    assert result is not None
    assert "test_dlogits" in result.withdrawn
    assert "could not run (RecursionError" in result.withdrawn["test_dlogits"]
    with course.gradebook() as gb:
        grade = gb.find_grade("test_dlogits", NB2, "backprop_ninja", "deep")
        assert grade.auto_score == grade.max_score > 0  # nbgrader gave the points...
        assert grade.score == 0
        assert grade.needs_manual_grade


def test_links_in_a_submission_are_never_followed(course_root):
    course = Course.load(root=course_root)
    linked = course.submitted_notebook("linker", NB2)
    linked.parent.mkdir(parents=True)
    linked.symlink_to(course.source_notebook(NB2).resolve())  # "my" notebook is the solution
    submit(course, "extra", [])
    (course.submitted_notebook("extra", NB2).parent / "data.bin").symlink_to("/dev/zero")
    statuses = autograde_class(course, workers=1, verify_seed=1, progress=False)
    for student, why in (
        ("linker", "is a link"),
        ("extra", "links or special files (backprop_ninja/data.bin)"),
    ):
        result = statuses[student].result(NB2)
        assert result is not None
        assert result.state == "failed"
        assert why in result.reason
        assert not course.autograded_notebook(student, NB2).exists()
