"""The whole grading pipeline on the demo class: real nbgrader, real kernels, two workers.

The demo class (grader/make_demo_class.py) is built in a temporary course root whose
solutions/ and notebooks/ are the repository's; it is autograded, given feedback and
exported exactly as `make grade` does, and every student's points and notes must be the
ones its DEMO table states. Then two students are graded again: one unchanged (same grades),
one who re-submitted a broken notebook (its old points must not survive).
"""

from __future__ import annotations

import csv
import html
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import VERIFY_SEED, digests, grade_cells, load_demo_module
from helpers import make_course_root as course_root

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class
from backprop_ninja.grading.collect import collect_exchange, collect_zip
from backprop_ninja.grading.status import FAILED, GRADED, STOPPED, read_status
from backprop_ninja.grading.table import class_rows, read_notebook_csv
from backprop_ninja.verify import secret_seeds

REPO = Path(__file__).resolve().parents[1]
NB1, NB2, NB3, NB4 = NOTEBOOKS

pytestmark = [pytest.mark.pipeline, pytest.mark.sandbox, pytest.mark.notebooks]


def page_text(path: Path) -> str:
    """What a student reads on a feedback page: its text, without the HTML."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))).split())


@pytest.fixture(scope="module")
def demo():
    return load_demo_module()


@pytest.fixture
def graded(graded_demo):
    return graded_demo


def test_every_student_gets_exactly_the_expected_points_and_notes(graded, demo):
    course = graded["course"]
    assert sorted(graded["statuses"]) == sorted(s.name for s in demo.DEMO)
    assert demo.differences(course) == []
    totals = {row.student: row.total for row in class_rows(course)}
    assert totals == {s.name: s.total for s in demo.DEMO}


def test_submitted_files_are_byte_identical_after_grading(graded):
    assert digests(graded["course"].submitted) == graded["before"]


def test_each_failure_is_reported_for_its_student_with_the_reason(graded, demo):
    course = graded["course"]
    for student in demo.DEMO:
        status = read_status(course.status, student.name)
        assert status == graded["statuses"][student.name]
        for result in status.notebooks:
            expected_failure = "NOT GRADED" in student.notes(result.notebook)
            assert (result.state == FAILED) == expected_failure, (student.name, result)
            if expected_failure:
                assert result.reason
                assert course.feedback_page(student.name, result.notebook).exists()
        log = (course.logs / f"{student.name}.log").read_text()
        assert all(f"===== {nb}: nbgrader autograde" in log for nb in NOTEBOOKS)
    # The failed notebooks stay in nbgrader's gradebook as "needs manual grading", never as
    # a silent 0: the per-notebook CSV carries the reason next to the 0.
    rows = read_notebook_csv(course.notebook_grades_csv)
    assert len(rows) == len(demo.DEMO) * len(NOTEBOOKS)
    for row in rows:
        if row["state"] != GRADED:
            assert row["score"] == "0", row
            assert row["notes"].startswith("NOT GRADED"), row


def test_grades_csv_has_one_row_per_student_with_the_expected_total(graded, demo):
    with open(graded["exported"][0], newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert {name: float(row["score"]) for name, row in rows.items()} == {s.name: s.total for s in demo.DEMO}
    assert {row["max_score"] for row in rows.values()} == {"46.0"}


def test_feedback_exists_for_everyone_and_holds_no_secret(graded, demo):
    course = graded["course"]
    assert sorted(graded["pages"]) == sorted(
        course.feedback_page(s.name, nb) for s in demo.DEMO for nb in NOTEBOOKS
    )
    secrets = [str(seed) for seed in secret_seeds(VERIFY_SEED)]  # the verifier's, in this run
    for page in graded["pages"]:
        text = page_text(page)
        assert "HIDDEN TESTS" not in text, page
        assert "test_hidden(" not in text, page
        assert not [seed for seed in secrets if seed in text], page
    # An answer by autograd: the notebook's own test failed it, and the page says why.
    flagged = page_text(course.feedback_page("slips_dc_autograd", NB2))
    assert "dlogits 0/5 — integrity: " in flagged
    assert "uses autograd" in flagged
    # Each test cell shows the grader's verdict: the points, and the verifier's reason.
    bessel = page_text(course.feedback_page("slips_db2_bessel", NB1))
    assert "❌ db2 0/1 — db2 on fresh inputs (" in bessel
    assert "✅ dlogprobs 1/1" in bessel
    failed = page_text(course.feedback_page("broken_kernel_metadata", NB3))
    assert "not graded automatically" in failed
    assert "kernel died" in failed


def test_a_regrade_gives_the_same_grades_and_keeps_nothing_stale(tmp_path, demo):
    """The student re-submits one notebook, damaged this time. Its old points must not survive;
    the student's other notebooks (a wrong answer, an answer by autograd the checks flag,
    full marks) must get exactly the same grades again. (A class of its own: the shared demo
    class stays as graded.)"""
    student = demo.DEMO_BY_NAME["slips_dc_autograd"]
    course = Course.load(root=course_root(tmp_path))
    demo.build(course, [student])
    autograde_class(course, workers=1, verify_seed=VERIFY_SEED, progress=False)
    before = grade_cells(course, student.name)
    assert before[(NB3, "test_dhprebn")] == 5
    assert before[(NB2, "test_dlogits")] == 0
    path = course.submitted_notebook(student.name, NB3)
    path.write_text(path.read_text()[:1000])
    status = autograde_class(course, workers=1, verify_seed=VERIFY_SEED, progress=False)[student.name]
    after = grade_cells(course, student.name)
    assert after[(NB3, "test_dhprebn")] == 0  # not the 5 points of the first run
    assert {k: v for k, v in after.items() if k[0] != NB3} == {k: v for k, v in before.items() if k[0] != NB3}
    assert status.result(NB3).state == FAILED
    assert "invalid JSON" in status.result(NB3).reason
    assert [status.result(nb).state for nb in (NB1, NB2, NB4)] == [GRADED] * 3
    assert list(status.result(NB2).findings) == ["test_dlogits"]  # flagged again, not left over
    assert not course.autograded_notebook(student.name, NB3).exists()


def test_a_notebook_that_runs_too_long_is_stopped_and_the_rest_still_graded(tmp_path, demo):
    """The per-notebook time limit: the worker is killed, the notebook reported, the next
    notebooks graded by a new worker. (Only notebook 2 is submitted: it never ends.)"""
    course = Course.load(root=course_root(tmp_path))
    texts = demo.submission_texts(demo.DEMO_BY_NAME["broken_json_endless"], course.root)
    folder = course.submitted / "slowpoke" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / f"{NB2}.ipynb").write_text(texts[NB2])
    status = autograde_class(course, workers=1, notebook_timeout=3, progress=False)["slowpoke"]
    assert [r.state for r in status.notebooks] == ["missing", STOPPED, "missing", "missing"]
    assert "took longer than 3 s" in status.result(NB2).reason
    with course.gradebook() as gb:
        assert gb.find_submission_notebook(NB2, ASSIGNMENT, "slowpoke").score == 0
    assert "STOPPED" in (course.logs / "slowpoke.log").read_text()


def test_collect_unpacks_a_canvas_zip_into_submitted(tmp_path, demo):
    course = Course.load(root=course_root(tmp_path))
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("smithalice_1001_555001_1_atomic_backprop.ipynb", "{}")
        zf.writestr("jonesbob_LATE_1002_555002_2_fused_cross_entropy-1.ipynb", "{}")
        zf.writestr("jonesbob_1002_555003_notes.txt", "not a notebook")
    collect_zip(course, archive)
    assert course.students() == ["jonesbob", "smithalice"]
    assert course.submitted_notebooks("smithalice") == [NB1]
    assert course.submitted_notebooks("jonesbob") == [NB2]
    shutil.rmtree(course.class_dir)


def test_collect_takes_the_latest_submissions_from_the_exchange(tmp_path, monkeypatch):
    course = Course.load(root=course_root(tmp_path))
    inbound = tmp_path / "exchange" / "backprop_ninja" / "inbound"
    for student, stamp, content in (
        ("ann", "2025-01-01 10:00:00.000000 UTC", "old"),
        ("ann", "2025-01-02 10:00:00.000000 UTC", "new"),
        ("bob", "2025-01-01 11:00:00.000000 UTC", "bob's"),
    ):
        folder = inbound / f"{student}+{ASSIGNMENT}+{stamp}"
        folder.mkdir(parents=True)
        (folder / f"{NB1}.ipynb").write_text(content)
        (folder / "timestamp.txt").write_text(stamp)
    monkeypatch.setenv("BACKPROP_NINJA_EXCHANGE", str(tmp_path / "exchange"))
    collect_exchange(course)
    assert course.students() == ["ann", "bob"]
    assert course.submitted_notebook("ann", NB1).read_text() == "new"
    assert course.submitted_notebook("bob", NB1).read_text() == "bob's"


# ------------------------------------------------------------------ the grader proves itself
def course_with_broken_model_answer(tmp_path: Path) -> Path:
    """A course root whose solutions/ is a copy with notebook 2's model answer made wrong
    (dlogits not divided by n): the grader must refuse to grade anyone with it."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copytree(REPO / "solutions", root / "solutions")
    (root / "notebooks").symlink_to(REPO / "notebooks", target_is_directory=True)
    path = root / "solutions" / ASSIGNMENT / f"{NB2}.ipynb"
    text = path.read_text(encoding="utf-8")
    assert text.count("dlogits /= n") == 1
    path.write_text(text.replace("dlogits /= n", "dlogits *= 1"), encoding="utf-8")
    return root


def grading_command(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m backprop_ninja.grading ARGS`` on the course at ``root`` (class: root/class)."""
    command = [
        sys.executable,
        "-m",
        "backprop_ninja.grading",
        *args,
        "--root",
        str(root),
        "--class-dir",
        "class",
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=root)


def test_model_answers_short_of_full_marks_stop_the_run_before_any_student(tmp_path, demo):
    root = course_with_broken_model_answer(tmp_path)
    course = Course.load(root=root, class_dir="class")
    demo.build(course, [demo.DEMO_BY_NAME["full_marks"]])
    before = digests(course.submitted)
    done = grading_command(root, "autograde", "--workers", "1", "--no-progress", "--verify-seed", "1")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("grader problem: "), done.stderr
    assert f"{NB2} test_dlogits: 0/5" in done.stderr  # the failing test, with its verdict
    assert "Traceback" not in done.stdout + done.stderr
    # Nothing recorded for any student: no gradebook rows, no status, no autograded copy.
    assert not course.status.exists()
    assert not course.autograded.exists()
    if (course.class_dir / "gradebook.db").exists():
        with course.gradebook() as gb:
            assert gb.students == [] or all(not s.submissions for s in gb.students)
    assert digests(course.submitted) == before
