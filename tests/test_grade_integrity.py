"""Grades an instructor can upload without checking by hand (issue 25), through the real
pipeline: real nbgrader, real kernels in the sandbox, a real SQLite gradebook.

* a kernel that cannot start is the grader's problem (exit 3), never the student's;
* a submitted file whose name is a decorated notebook name is graded; one that cannot be
  matched says what was found; an empty folder is "nothing submitted";
* a "not graded" never becomes 0 in grades_canvas.csv (unless asked), and a failed export
  keeps the previous files;
* a regrade keeps what a TA entered by hand and prints what changed.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import VERIFY_SEED, digests, grade_cells, load_demo_module

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading import Course, GraderProblem, autograde_class
from backprop_ninja.grading.__main__ import main
from backprop_ninja.grading.collect import summary
from backprop_ninja.grading.export import export_class, pending_students
from backprop_ninja.grading.intake import canonical_notebook, match_files
from backprop_ninja.grading.reasons import failure_reason, is_grader_problem
from backprop_ninja.grading.status import FAILED, GRADED, MISSING, read_status
from backprop_ninja.grading.table import class_rows

NB1, NB2, NB3, NB4 = NOTEBOOKS


# --------------------------------------------------------------------------- unit: names
@pytest.mark.parametrize(
    ("name", "notebook"),
    [
        ("1_atomic_backprop (1).ipynb", NB1),
        ("1_atomic_backprop-1.ipynb", NB1),
        ("Copy of 2_Fused_Cross_Entropy.ipynb", NB2),
        ("3 fused batchnorm.ipynb", NB3),
        ("4-FULL-TRAINING (2).IPYNB", NB4),
        ("5_atomic_backprop.ipynb", None),
        ("notes.ipynb", None),
    ],
)
def test_a_decorated_name_is_the_one_notebook_it_can_be(name, notebook):
    assert canonical_notebook(name) == notebook


def test_two_candidates_for_one_notebook_are_not_guessed(tmp_path):
    folder = tmp_path / "ann"
    (folder / ASSIGNMENT).mkdir(parents=True)
    for name in ("1_atomic_backprop (1).ipynb", "Copy of 1_atomic_backprop.ipynb", "notes.ipynb"):
        (folder / ASSIGNMENT / name).write_text("{}")
    matching = match_files(folder)
    assert matching.files == {}
    assert sorted(matching.ambiguous[NB1]) == [
        f"{ASSIGNMENT}/1_atomic_backprop (1).ipynb",
        f"{ASSIGNMENT}/Copy of 1_atomic_backprop.ipynb",
    ]
    assert "none of the course's notebooks" in matching.unmatched[f"{ASSIGNMENT}/notes.ipynb"]


@pytest.mark.parametrize(
    ("log", "grader"),
    [
        ("RuntimeError: Kernel died before replying to kernel_info", True),
        ("RuntimeError: Kernel didn't respond in 60 seconds", True),
        ("backprop_ninja.grading.kernels.KernelStartError: its sandbox could not be built: OSError", True),
        ("[ERROR] Kernel died while waiting for execute reply.\nDeadKernelError: Kernel died", False),
    ],
)
def test_a_kernel_that_never_started_is_the_graders_problem_one_that_died_is_not(log, grader):
    reason = failure_reason(log)
    assert is_grader_problem(reason) == grader, reason
    assert ("os._exit" in reason) == (not grader)


def test_feedback_with_nothing_graded_says_so_and_fails(course_root, capsys):
    course = Course.load(root=course_root)
    (course.submitted / "ann" / ASSIGNMENT).mkdir(parents=True)
    assert main(["feedback", "--root", str(course_root)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: nothing has been autograded")
    assert "make autograde" in error


# -------------------------------------------------------------------- the real pipeline
@pytest.mark.pipeline
@pytest.mark.notebooks
def test_a_kernel_that_cannot_start_stops_the_run_as_a_grader_problem(course_root, tmp_path, monkeypatch):
    """Kernels that die before any of the student's code ran (here: an ipykernel_launcher
    that cannot be imported) fail the model answers: GraderProblem quoting the kernel's last
    lines, nothing recorded — never "os._exit" on every student."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ipykernel_launcher.py").write_text(
        "raise SystemExit('kernel broken on purpose by the test')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    course = Course.load(root=course_root)
    (course.submitted / "ann" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(course.release_notebook(NB2), course.submitted_notebook("ann", NB2))
    with pytest.raises(GraderProblem) as problem:
        autograde_class(course, workers=1, progress=False, sandboxed=False, use_forkserver=False)
    message = str(problem.value)
    assert "the Python kernel could not start" in message
    assert "os._exit" not in message
    assert "kernel broken on purpose by the test" in message  # the kernel's own last words
    assert not course.status.exists()
    assert not course.autograded.exists()


def canvas_cells(course: Course) -> dict[str, str]:
    with open(course.canvas_csv, newline="", encoding="utf-8") as handle:
        return {row["SIS Login ID"]: row[ASSIGNMENT] for row in list(csv.DictReader(handle))[1:]}


@pytest.fixture(scope="module")
def demo():
    return load_demo_module()


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_names_not_graded_cells_and_a_regrade_that_keeps_a_tas_work(tmp_path, demo, capsys, monkeypatch):
    """One small class through autograde, export and a regrade:

    ann   notebook 1 saved as "1_atomic_backprop (1).ipynb", notebook 2 as "Copy of …" in a
          subfolder: both graded (31 points), the files keep their names;
    bob   only "my work.ipynb": every notebook NOT GRADED, saying which file was found;
    carl  an empty folder: "nothing submitted" in the table, 0 in Canvas;
    dora  notebook 3 right (5 points), then a TA gives test_dhprebn 3 points and a comment.
    """
    from helpers import make_course_root

    course = Course.load(root=make_course_root(tmp_path))
    texts = demo.submission_texts(demo.DEMO_BY_NAME["full_marks"], course.root)
    ann = course.submitted / "ann" / ASSIGNMENT
    (ann / "sub").mkdir(parents=True)
    (ann / "1_atomic_backprop (1).ipynb").write_text(texts[NB1])
    (ann / "sub" / "Copy of 2_fused_cross_entropy.ipynb").write_text(texts[NB2])
    (course.submitted / "bob" / ASSIGNMENT).mkdir(parents=True)
    (course.submitted / "bob" / ASSIGNMENT / "my work.ipynb").write_text(texts[NB3])
    (course.submitted / "carl").mkdir(parents=True)
    (course.submitted / "dora" / ASSIGNMENT).mkdir(parents=True)
    course.submitted_notebook("dora", NB3).write_text(texts[NB3])
    before = digests(course.submitted)
    lines = summary(course)
    assert lines[0] == "collected: 4 students, 3 notebooks"
    assert any("ann: 1_atomic_backprop (1).ipynb" in line.replace(f"{ASSIGNMENT}/", "") for line in lines)
    assert any("bob: " in line and "my work.ipynb" in line for line in lines)
    assert any("nothing submitted: carl" in line for line in lines)

    statuses = autograde_class(course, workers=1, verify_seed=VERIFY_SEED, progress=False)
    assert digests(course.submitted) == before  # matched into the graded copy, never renamed
    rows = {row.student: row for row in class_rows(course)}
    assert rows["ann"].points[NB1] == 26
    assert rows["ann"].points[NB2] == 5
    assert rows["ann"].total == 31
    assert [statuses["ann"].result(nb).state for nb in NOTEBOOKS] == [GRADED, GRADED, MISSING, MISSING]
    assert all(r.state == FAILED and "my work.ipynb" in r.reason for r in statuses["bob"].notebooks)
    assert rows["carl"].notes[NB1] == ["nothing submitted"]
    assert rows["carl"].total == 0
    assert rows["dora"].points[NB3] == 5

    # Export: bob's notebooks are NOT GRADED → his Canvas cell is empty, and export says why.
    assert set(pending_students(course)) == {"bob"}
    assert main(["export", "--root", str(course.root)]) == 0
    out = capsys.readouterr().out
    assert "1 students not fully graded, left EMPTY" in out
    assert "bob: " in out
    assert canvas_cells(course) == {"ann": "31", "bob": "", "carl": "0", "dora": "5"}
    export_class(course, ungraded_as_zero=True)
    assert canvas_cells(course)["bob"] == "0"
    # A failed export keeps the previous files, whole.
    previous = {
        p.name: p.read_bytes() for p in (course.grades_csv, course.notebook_grades_csv, course.canvas_csv)
    }

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    import backprop_ninja.grading.lms as lms

    monkeypatch.setattr(lms, "write_canvas_csv", disk_full)
    with pytest.raises(OSError, match="disk full"):
        export_class(course)
    monkeypatch.undo()
    assert {
        p.name: p.read_bytes() for p in (course.grades_csv, course.notebook_grades_csv, course.canvas_csv)
    } == previous
    assert not [p for p in course.class_dir.iterdir() if p.name.endswith(".part")]

    # A TA's manual score and comment (what the Formgrader writes) survive a regrade; the
    # regrade prints what changed (ann's notebook 2 is gone now).
    with course.gradebook() as gb:
        gb.find_grade("test_dhprebn", NB3, ASSIGNMENT, "dora").manual_score = 3.0
        comment = gb.find_submission_notebook(NB3, ASSIGNMENT, "dora").comments[0]
        comment.manual_comment = "TA: the formula is right but the dtype is float64"
        gb.db.commit()
    (ann / "sub" / "Copy of 2_fused_cross_entropy.ipynb").unlink()
    assert main(["autograde", "--root", str(course.root), "--students", "ann,dora", "--workers", "1",
                 "--no-progress", "--verify-seed", str(VERIFY_SEED)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"ann {NB2} test_dlogits: 5 → 0" in out
    assert "kept 2 manual scores and comments" in out
    assert grade_cells(course, "dora")[(NB3, "test_dhprebn")] == 3.0
    with course.gradebook() as gb:
        comment = gb.find_submission_notebook(NB3, ASSIGNMENT, "dora").comments[0]
        assert comment.manual_comment.endswith("TA: the formula is right but the dtype is float64")
        assert not gb.find_grade("test_dhprebn", NB3, ASSIGNMENT, "dora").needs_manual_grade
    assert read_status(course.status, "dora").result(NB3).state == GRADED


def run_grading(root: Path, *args: str, **popen) -> subprocess.Popen:
    """``python -m backprop_ninja.grading ARGS --root ROOT`` as an instructor runs it."""
    command = [sys.executable, "-m", "backprop_ninja.grading", *args, "--root", str(root)]
    return subprocess.Popen(command, cwd=root, text=True, **popen)


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_ctrl_c_during_autograde_is_one_line_exit_130_and_a_consistent_gradebook(course_root, demo):
    course = Course.load(root=course_root)
    texts = demo.submission_texts(demo.DEMO_BY_NAME["full_marks"], course.root)
    students = ["ann", "bob", "cid"]
    for student in students:
        (course.submitted / student / ASSIGNMENT).mkdir(parents=True)
        course.submitted_notebook(student, NB2).write_text(texts[NB2])
    process = run_grading(
        course.root, "autograde", "--workers", "1", "--no-progress", "--verify-seed", "1",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 900
    while not list(course.status.glob("*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert re.match(r"interrupted: [12] of 3 students graded and recorded; re-run", lines[0]), err
    graded = sorted(p.stem for p in course.status.glob("*.json"))
    with course.gradebook() as gb:
        recorded = sorted(s.student.id for s in gb.assignment_submissions(ASSIGNMENT))
        assert recorded == graded  # a student is recorded whole, or not at all
        for student in graded:
            assert gb.find_submission_notebook(NB2, ASSIGNMENT, student).score == 5


@pytest.mark.pipeline
def test_a_second_formgrader_prints_the_running_ones_url_and_keeps_its_log(course_root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = course_root / "grader" / "work" / "formgrader" / "server.log"
    first = run_grading(
        course_root, "formgrader", "--port", str(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = ""
        while f":{port}/formgrader?token=" not in url and first.poll() is None:
            url = first.stdout.readline().strip()  # its URL, printed as it starts
        deadline, up = time.monotonic() + 180, False
        while not up and time.monotonic() < deadline and first.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    up = response.status == 200
            except OSError:
                time.sleep(1)
        assert up, url
        before = log.read_text()
        again = run_grading(
            course_root, "formgrader", "--port", str(port + 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, out + err
        assert "already running" in out, out + err
        assert url in out, out + err
        after = log.read_text()  # the running server's log: kept, and no second server in it
        assert after.startswith(before)
        assert after.count("is running at") == before.count("is running at") == 1
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)


# ------------------------------------------------------- the course works wherever it is put
@pytest.fixture(scope="module")
def clone_under_tmp(tmp_path_factory) -> Path:
    """This checkout's tracked files (as they are now), data/names.txt and its venv (hard
    links: no copy of torch; the editable install pointed at the clone's src/), under /tmp in a
    folder whose name has a space: a course as `git clone` + `make setup data` put it there."""
    from backprop_ninja.course import REPO_ROOT

    clone = tmp_path_factory.mktemp("clone") / "backprop ninja"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
    for name in [n for n in tracked.stdout.decode().split("\0") if n] + ["data/names.txt"]:
        if (REPO_ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, clone / name)
    subprocess.run(["cp", "-al", sys.prefix, str(clone / ".venv")], check=True)
    for pth in (clone / ".venv").glob("lib/python*/site-packages/__editable__*.pth"):
        pth.unlink()  # a hard link: never write through it into this checkout's venv
        pth.write_text(f"{clone / 'src'}\n")
    return clone


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_course_cloned_under_tmp_grades_full_marks_with_tmpdir_elsewhere(clone_under_tmp, demo, tmp_path):
    clone = clone_under_tmp
    python = clone / ".venv" / "bin" / "python"
    course = Course.load(root=clone, class_dir="grader/work/demo")
    demo.build(course, [demo.DEMO_BY_NAME["full_marks"]])  # notebook 1 saved as "… (1).ipynb"
    other_tmp = tmp_path / "other tmp"
    other_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(python), "-c", "import backprop_ninja; print(backprop_ninja.__file__)"],
        capture_output=True, text=True, env=env, cwd=clone, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(clone / "src")), where.stdout
    done = subprocess.run(
        [str(python), "-m", "backprop_ninja.grading", "autograde", "--class-dir", "grader/work/demo", "--workers", "1", "--no-progress", "--verify-seed", "1"],
        capture_output=True, text=True, env={**env, "TMPDIR": str(other_tmp)}, cwd=clone,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sum(grade_cells(course, "full_marks").values()) == 46
