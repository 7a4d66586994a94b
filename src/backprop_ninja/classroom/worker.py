"""Grading one student, in a worker process of its own: ``python -m backprop_ninja.classroom
grade-student STUDENT …`` (started by ``pipeline.autograde_class``, never by hand).

Each notebook is autograded on its own (``nbgrader autograde --notebook``), so a notebook that
nbgrader cannot grade (invalid JSON, a dead kernel, edited metadata) costs only that
notebook: nbgrader stops at the first failure of an assignment and would skip the rest.
Then the notebooks that earned points go through the integrity checks (``trust``).
Progress is reported as JSON lines in an events file, so that the parent can stop a
notebook that takes too long and carry on with the next one in a new worker.

The submitted files are only read (nbgrader copies them; the checks open them read-only);
their sha256 is compared before and after, and a change would be reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from ..course import ASSIGNMENT
from ..grading import sandbox
from ..integrity import one_line
from .course import Course, prepare_environment
from .reasons import failure_reason, success_notes
from .status import FAILED, GRADED, MISSING, NotebookResult
from .trust import VERIFY_TIMEOUT, checked_tests, integrity_reasons, untrusted_tests, withdraw_points

UNSANDBOXED_NOTE = (
    "graded WITHOUT a sandbox (autograde --no-sandbox): the student's code ran with the grader's permissions"
)


def emit(events: Path | None, **event) -> None:
    """Append one event (a JSON line) for the parent; flushed at once."""
    if events is None:
        return
    with open(events, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event, ensure_ascii=False) + "\n")


def read_events(events: Path) -> list[dict]:
    """The events written so far (a half-written last line is left for the next read)."""
    if not events.exists():
        return []
    lines = events.read_text(encoding="utf-8").split("\n")
    result = []
    for line in lines[:-1]:  # the last piece has no newline yet (or is empty)
        if line.strip():
            result.append(json.loads(line))
    return result


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def forget_submission(course: Course, student: str) -> None:
    """Remove the student's previous grading (gradebook rows, autograded copies, feedback),
    so that nothing stale survives a regrade: nbgrader keeps the grades of cells that have
    disappeared and, when a regrade fails, all the old grades."""
    from nbgrader.api import MissingEntry

    with course.gradebook() as gb:
        try:
            gb.remove_submission(ASSIGNMENT, student)
        except MissingEntry:
            pass
        # An empty submission (no scores: 0 points) until nbgrader grades a notebook, so
        # that a student whose notebooks all fail or are stopped is still in the gradebook.
        gb.update_or_create_student(student)
        gb.add_submission(ASSIGNMENT, student)
    for folder in (course.autograded / student / ASSIGNMENT, course.feedback / student / ASSIGNMENT):
        shutil.rmtree(folder, ignore_errors=True)


def not_a_regular_submission(course: Course, student: str, notebook: str) -> str | None:
    """Why the submitted notebook is not graded, if it (or a folder above it, up to the
    submissions) is a link or not a regular file: grading must never follow a link into
    solutions/ or a classmate's work."""
    path = course.submitted_notebook(student, notebook)
    for part in (path, path.parent, path.parent.parent):
        if part.is_symlink():
            return f"{part.relative_to(course.submitted)} is a link, not the student's own file: ask for the notebook itself"
    if not stat.S_ISREG(path.lstat().st_mode):
        return "the submitted notebook is not a regular file: ask for the notebook itself"
    # nbgrader copies the whole folder: a link in it (to /dev/zero, to solutions/) would be followed.
    odd = [
        os.path.relpath(os.path.join(folder, name), path.parent)
        for folder, dirs, files in os.walk(path.parent)  # never follows a link
        for name in dirs + files
        if not (stat.S_ISREG(mode := os.lstat(os.path.join(folder, name)).st_mode) or stat.S_ISDIR(mode))
    ]
    if odd:
        return (
            f"the submission folder holds links or special files ({', '.join(sorted(odd)[:3])}): remove them"
        )
    return None


def autograde_notebook(api, student: str, notebook: str) -> tuple[bool, str]:
    """``nbgrader autograde backprop_ninja --student S --notebook NB --force``, in this
    process. Returns (success, nbgrader's log with the traceback of a failure)."""
    from nbgrader.converters import Autograde
    from nbgrader.utils import capture_log, temp_attrs

    with temp_attrs(api.coursedir, assignment_id=ASSIGNMENT, student_id=student, notebook_id=notebook):
        app = Autograde(coursedir=api.coursedir, parent=api)
        app.force = True
        app.create_student = True
        outcome = capture_log(app)
    return bool(outcome["success"]), outcome.get("log", "") + outcome.get("error", "")


def grade_notebook(
    course: Course,
    api,
    student: str,
    notebook: str,
    *,
    verify_timeout: float = VERIFY_TIMEOUT,
    verify_seed: int | None = None,
    verify_cache: Path | None = None,
) -> NotebookResult:
    start = time.monotonic()
    submitted = course.submitted_notebook(student, notebook)
    if not submitted.exists() and not submitted.is_symlink():
        return NotebookResult(notebook, MISSING, reason="not submitted")
    refused = not_a_regular_submission(course, student, notebook)
    if refused:
        return NotebookResult(notebook, FAILED, reason=refused)
    before = sha256(submitted)
    success, log = autograde_notebook(api, student, notebook)
    nbgrader_seconds = time.monotonic() - start
    print(
        f"\n===== {notebook}: nbgrader autograde ({'ok' if success else 'FAILED'}, "
        f"{nbgrader_seconds:.1f} s)\n{log}",
        flush=True,
    )
    if not success:
        result = NotebookResult(notebook, FAILED, reason=failure_reason(log))
    else:
        notes = success_notes(
            log, course.autograded_notebook(student, notebook), course.cell_timeout_seconds()
        )
        result = NotebookResult(notebook, GRADED, notes=notes)
        if not sandbox.enabled():
            result.notes.append(UNSANDBOXED_NOTE)
        _check_trust(course, student, notebook, result, verify_timeout, verify_seed, verify_cache)
    if sha256(submitted) != before:  # must never happen: say so loudly
        result.notes.append("THE SUBMITTED FILE CHANGED DURING GRADING — keep the original safe")
    seconds = time.monotonic() - start
    result.seconds = round(seconds, 1)
    print(
        f"----- {notebook}: {result.state} in {seconds:.1f} s "
        f"(nbgrader {nbgrader_seconds:.1f} s, checks {seconds - nbgrader_seconds:.1f} s)",
        *result.messages(),
        sep="\n  ",
        flush=True,
    )
    return result


def _check_trust(
    course: Course,
    student: str,
    notebook: str,
    result: NotebookResult,
    verify_timeout: float,
    verify_seed: int | None,
    verify_cache: Path | None,
) -> None:
    """Withdraw the points the integrity scan or the verifier does not trust."""
    with course.gradebook() as gb:
        earned = any(g.auto_score for g in gb.find_submission_notebook(notebook, ASSIGNMENT, student).grades)
    if not earned:  # nothing to take away; the scan's findings are still shown (issue 13)
        try:
            findings = integrity_reasons(
                course.submitted_notebook(student, notebook),
                notebook,
                source=course.source_notebook(notebook),
            )
        except Exception:  # only comments depend on it: nothing to fail closed for
            findings = {}
        if findings:
            with course.gradebook() as gb:
                withdraw_points(gb, student, notebook, findings)
        return
    try:
        reasons = untrusted_tests(
            course.submitted_notebook(student, notebook),
            notebook,
            source=course.source_notebook(notebook),
            verify_timeout=verify_timeout,
            verify_seed=verify_seed,
            cache_dir=verify_cache,
        )
    except Exception as error:  # fail closed: points nobody could check are not given
        reason = one_line(
            f"the integrity checks could not run ({type(error).__name__}: {error}): "
            "0 points until a TA checks this notebook by hand"
        )
        with course.gradebook() as gb:
            result.withdrawn = withdraw_points(
                gb, student, notebook, dict.fromkeys(checked_tests(notebook), reason), needs_review=True
            )
        return
    if reasons:
        with course.gradebook() as gb:
            result.withdrawn = withdraw_points(gb, student, notebook, reasons)


def grade_student(
    course: Course,
    student: str,
    notebooks: list[str],
    *,
    fresh: bool,
    events: Path | None = None,
    verify_timeout: float = VERIFY_TIMEOUT,
    verify_seed: int | None = None,
    verify_cache: Path | None = None,
    threads: int | None = None,
) -> list[NotebookResult]:
    """Grade ``notebooks`` of ``student``; ``fresh``: forget the previous grading first."""
    prepare_environment(threads=threads)
    _quiet_known_warnings()
    api = course.api()
    if fresh:
        forget_submission(course, student)
    results = []
    for notebook in notebooks:
        emit(events, event="start", notebook=notebook)
        result = grade_notebook(
            course,
            api,
            student,
            notebook,
            verify_timeout=verify_timeout,
            verify_seed=verify_seed,
            verify_cache=verify_cache,
        )
        emit(events, event="done", **asdict(result))
        results.append(result)
    return results


def _quiet_known_warnings() -> None:
    """nbgrader 0.9.6 with SQLAlchemy 2 warns on every query; it says nothing about the student."""
    try:
        from sqlalchemy.exc import SAWarning
    except ImportError:  # pragma: no cover
        return
    warnings.filterwarnings("ignore", category=SAWarning)
