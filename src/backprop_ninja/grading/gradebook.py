"""The coordinator's gradebook: the one module that writes grades, and the files beside them.

``register_assignment`` records the assignment in the class's gradebook (SQLite or
PostgreSQL); ``release`` packs the same registration in a private SQLite file, plus the
solution notebooks, for the grading jobs to carry. ``record`` turns one job's ``GradingResult``
into the student's gradebook rows (from a clean slate, so a regrade leaves nothing stale),
the autograded notebooks, the status file and the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from ..course import ASSIGNMENT, NOTEBOOKS
from ..text import printable
from .classdir import Course, GradingError, prepare_environment, quiet_known_warnings, sqlite_url
from .lateness import assign_late_penalties, submission_time
from .results import GradingResult, NotebookGrade, Release
from .status import GRADED, MISSING, StudentStatus, read_status, write_status
from .trust import answer_cell_of

RELEASE_SCRATCH = "grader/work/release"


def register_assignment(course: Course) -> None:
    """Record the assignment's cells, points and checksums in the class's gradebook, from solutions/."""
    _generate_assignment(course, course.db_url, RELEASE_SCRATCH)


def enrol(course: Course, students: list[str]) -> None:
    """Every student of the run in the gradebook, in sorted order, before any result comes
    in: exports list them in that order, whichever job finishes first."""
    with course.gradebook() as gb:
        for student in sorted(students):
            gb.update_or_create_student(student)


def release(course: Course) -> Release:
    """The release every grading job carries: the assignment registered in a private SQLite
    gradebook (whatever the class's gradebook is), and the solution notebooks."""
    sources = {nb: course.source_notebook(nb).read_bytes() for nb in NOTEBOOKS}
    key = (str(course.config_file), _digest(sources))
    if key not in _REGISTERED:
        _REGISTERED[key] = _registered(course)
    return Release(gradebook=_REGISTERED[key], sources=sources, cell_timeout=course.cell_timeout_seconds())


def _digest(sources: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for notebook, content in sorted(sources.items()):
        digest.update(notebook.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


# The same solutions and configuration give the same registration: a process that grades
# several times (tests, the bench) registers the release once.
_REGISTERED: dict[tuple[str, str], bytes] = {}


def _registered(course: Course) -> bytes:
    """A private SQLite gradebook with the assignment registered."""
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        private = Path(scratch, "gradebook.db")
        _generate_assignment(course, sqlite_url(private), str(Path(scratch, "release")))
        return private.read_bytes()


def _generate_assignment(course: Course, db_url: str, release_directory: str) -> None:
    """``nbgrader generate_assignment`` into a scratch release folder (notebooks/, the
    committed student version, is never touched here)."""
    from nbgrader.apps import NbGraderAPI

    prepare_environment()
    config = course.config()
    config.CourseDirectory.release_directory = release_directory
    config.CourseDirectory.db_url = db_url
    outcome = NbGraderAPI(config=config).generate_assignment(ASSIGNMENT, force=True, create=True)
    if not outcome["success"]:
        raise GradingError(
            f"could not register the assignment in the gradebook ({db_url}):\n"
            f"{outcome.get('log', '')}{outcome.get('error', '')}"
        )


def record(course: Course, result: GradingResult) -> StudentStatus:
    """Write one student's result: gradebook rows, autograded notebooks, status and log.
    The student's rows start from a clean slate, but what a TA entered (manual scores and
    comments, in the Formgrader or through nbgrader's API) is kept; the status lists what
    changed since the previous grading (``StudentStatus.changes``). The submission's time
    (nbgrader's timestamp.txt in submitted/) is recorded with it, so the gradebook knows how
    late it was; a late-submission penalty is taken only if the course configures one."""
    quiet_known_warnings()
    student = result.student
    handed_in = submission_time(course.submitted / student / ASSIGNMENT)
    with course.gradebook() as gb:
        before = _scores(gb, student)
        scores, comments = _manual_entries(gb, student, read_status(course.status, student))
        _forget(gb, student, handed_in)
        for notebook in result.notebooks:
            if notebook.state != MISSING:
                _record_notebook(gb, student, notebook)
        _restore(gb, student, scores, comments)
        assign_late_penalties(course, gb, student)
        gb.db.commit()
        after = _scores(gb, student) or {}
    for folder in (course.autograded / student / ASSIGNMENT, course.feedback / student / ASSIGNMENT):
        shutil.rmtree(folder, ignore_errors=True)
    for notebook in result.notebooks:
        if notebook.autograded is not None:
            path = course.autograded_notebook(student, notebook.notebook)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(notebook.autograded)
    status = StudentStatus(student, [nb.status() for nb in result.notebooks])
    write_status(course.status, status)
    course.logs.mkdir(parents=True, exist_ok=True)
    (course.logs / f"{student}.log").write_text(result.log + "\n", encoding="utf-8")
    if before is not None:
        status.changes = [
            (nb, test, old, after.get((nb, test)))
            for (nb, test), old in before.items()
            if old != after.get((nb, test))
        ]
    status.kept_manual = len(scores) + len(comments)
    return status


def _scores(gb, student: str) -> dict[tuple[str, str], float | None] | None:
    """(notebook, test) → the student's points in the gradebook (None: no submission yet)."""
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(ASSIGNMENT, student)
    except MissingEntry:
        return None
    return {(nb.name, grade.name): grade.score for nb in submission.notebooks for grade in nb.grades}


# A line of a comment the grader wrote itself (_record_notebook): "<test>: 5 point(s) withdrawn
# — …" or "<test>: integrity: …". Every other line of a comment is a TA's.
_GRADER_LINE = re.compile(r"^[\w.-]+: (?:[\d.]+ point\(s\) withdrawn — |integrity:)")


def _manual_entries(gb, student: str, previous: StudentStatus | None):
    """What a TA entered for the student: manual scores ((notebook, test) → points) and
    comment lines ((notebook, cell) → text), without what the grader wrote itself (the 0 of
    withdrawn points, the withdrawal comments)."""
    from nbgrader.api import MissingEntry

    scores: dict[tuple[str, str], float] = {}
    comments: dict[tuple[str, str], str] = {}
    try:
        submission = gb.find_submission(ASSIGNMENT, student)
    except MissingEntry:
        return scores, comments
    for nb in submission.notebooks:
        result = previous.result(nb.name) if previous else None
        withdrawn = result.withdrawn if result else {}
        for grade in nb.grades:
            if grade.manual_score is not None and not (grade.name in withdrawn and grade.manual_score == 0):
                scores[nb.name, grade.name] = grade.manual_score
        for comment in nb.comments:
            lines = (comment.manual_comment or "").splitlines()
            own = "\n".join(line for line in lines if not _GRADER_LINE.match(line)).strip()
            if own:
                comments[nb.name, comment.name] = own
    return scores, comments


def _restore(gb, student: str, scores: dict, comments: dict) -> None:
    """Put a TA's manual scores and comment lines back after a regrade (a score stays the
    grade: it no longer needs a manual grade; comment lines follow the grader's own)."""
    for (notebook, test), points in scores.items():
        grade = gb.find_grade(test, notebook, ASSIGNMENT, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
    for (notebook, cell), text in comments.items():
        comment = gb.find_comment(cell, notebook, ASSIGNMENT, student)
        comment.manual_comment = "\n".join(part for part in (comment.manual_comment, text) if part)


def _forget(gb, student: str, handed_in=None) -> None:
    """Remove the student's previous grading and start an empty submission (0 points until a
    notebook is graded), handed in at ``handed_in`` (None: no time known), keeping an
    extension of the due date a TA granted: nbgrader keeps the grades of cells that
    disappeared otherwise."""
    from nbgrader.api import MissingEntry

    extension = None
    with contextlib.suppress(MissingEntry):
        extension = gb.find_submission(ASSIGNMENT, student).extension
        gb.remove_submission(ASSIGNMENT, student)
    gb.update_or_create_student(student)
    gb.add_submission(ASSIGNMENT, student, timestamp=handed_in, extension=extension)


def _record_notebook(gb, student: str, notebook: NotebookGrade) -> None:
    """A graded notebook's points, withdrawals and comments; an ungraded one is left as
    nbgrader leaves a failed one: no scores, needs manual grading."""
    submitted = gb.find_submission_notebook(notebook.notebook, ASSIGNMENT, student)
    grades = {grade.name: grade for grade in submitted.grades}
    if notebook.state != GRADED:
        for grade in grades.values():
            grade.auto_score = grade.manual_score = None
            grade.needs_manual_grade = True
        return
    withdrawn: dict[str, list[str]] = {}
    for test in notebook.tests:
        grade = grades[test.test]
        grade.auto_score = test.auto_points
        grade.needs_manual_grade = test.needs_review
        if test.withdrawn:
            grade.manual_score = 0.0
            withdrawn.setdefault(answer_cell_of(notebook.notebook, test.test), []).append(
                f"{test.test}: {test.auto_points:g} point(s) withdrawn — {test.withdrawn}"
            )
        elif test.finding:
            withdrawn.setdefault(answer_cell_of(notebook.notebook, test.test), []).append(
                f"{test.test}: {test.finding}"
            )
    submitted.flagged = bool(withdrawn)  # the Formgrader's "Flagged?" column: an integrity finding
    for comment in submitted.comments:
        comment.auto_comment = notebook.comments.get(comment.name)
        if comment.name in withdrawn:
            comment.manual_comment = printable("\n".join(withdrawn[comment.name]))
