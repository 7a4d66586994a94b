"""Grading one student: a ``GradingJob`` in, a ``GradingResult`` out, nothing written elsewhere.

The job builds a private staging folder: a copy of the registered gradebook, the student's
notebooks (copies of the bytes it was given) and the solution notebooks the checks compare
with. Each notebook is autograded there on its own (``nbgrader autograde --notebook``), so a
notebook nbgrader cannot grade costs only that notebook; a notebook that runs longer than the
job's limit has its kernel killed and is reported as stopped. The notebooks that earned
points then go through the integrity scan and the trusted verifier (``trust``), whose
findings withdraw points in the result — never in a gradebook. The staging folder is removed
at the end; the coordinator (``gradebook.record``) writes what the result says.

Run as ``python -m backprop_ninja.grading.job JOB RESULT`` (pickle files) by the local
executor, or called as ``run_job`` by a Dask worker.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

from ..course import ASSIGNMENT, MAX_NOTEBOOK_CELLS, NOTEBOOKS, SANDBOX_VARIABLE
from ..sandbox import build as sandbox
from ..text import one_line
from . import kernels
from .classdir import Course, prepare_environment, quiet_known_warnings, sqlite_url
from .reasons import INTERRUPTED, failure_reason, grader_problem, success_notes
from .results import (
    GRADER,
    INTEGRITY,
    NBGRADER,
    VERIFIER,
    Decision,
    GradedTest,
    GradingJob,
    GradingResult,
    NotebookGrade,
)
from .status import FAILED, GRADED, MISSING, STOPPED
from .trust import cell_errors, checked_tests, grade_reasons, integrity_reasons, untrusted_tests

UNSANDBOXED_NOTE = (
    "graded WITHOUT a sandbox (autograde --no-sandbox): the student's code ran with the grader's permissions"
)


def run_job(job: GradingJob) -> GradingResult:
    """Grade ``job.student``'s notebooks in a staging folder of this job's own."""
    prepare_environment(threads=job.threads)
    os.environ[SANDBOX_VARIABLE] = "1" if job.sandboxed else "0"  # read by the kernel manager
    quiet_known_warnings()
    log: list[str] = []
    if job.sandboxed and (why := sandbox.problem()):  # e.g. a cluster worker without bubblewrap
        notebooks = [_cannot_sandbox(job, nb, why) for nb in NOTEBOOKS]
        return GradingResult(job.student, notebooks, log=sandbox.unavailable_message() or why)
    if job.sandboxed:
        sandbox.remove_stale_cgroups()  # left by a job on this machine that was killed outright
    with tempfile.TemporaryDirectory(prefix="grading-job-") as staging:
        course = _stage(Path(staging), job)
        api = course.api()
        notebooks = [_grade_notebook(course, api, job, notebook, log) for notebook in NOTEBOOKS]
    return GradingResult(job.student, notebooks, log="\n".join(log))


def _cannot_sandbox(job: GradingJob, notebook: str, why: str) -> NotebookGrade:
    """Fail closed on a machine that cannot sandbox: nothing of the student's runs there."""
    if notebook not in job.files and notebook not in job.refused:
        return NotebookGrade(notebook, MISSING, reason=_missing(job))
    reason = f"the grading machine cannot sandbox the student's code ({why}): install bubblewrap there"
    return NotebookGrade(notebook, FAILED, reason=grader_problem(one_line(reason)))


def _missing(job: GradingJob) -> str:
    """The reason of a notebook that is not there: "nothing submitted" when none is."""
    return "not submitted" if job.files or job.refused else "nothing submitted"


def _stage(staging: Path, job: GradingJob) -> Course:
    """The job's private course: gradebook copy, submitted copies, solution notebooks."""
    (staging / "gradebook.db").write_bytes(job.release.gradebook)
    for notebook, content in job.release.sources.items():
        _write(staging / "solutions" / ASSIGNMENT / f"{notebook}.ipynb", content)
    for notebook, content in job.files.items():
        _write(staging / "submitted" / job.student / ASSIGNMENT / f"{notebook}.ipynb", content)
    return Course(
        root=staging,
        class_dir=staging,
        db_url=sqlite_url(staging / "gradebook.db"),
        cell_timeout=job.release.cell_timeout,
    )


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _grade_notebook(course: Course, api, job: GradingJob, notebook: str, log: list[str]) -> NotebookGrade:
    start = time.monotonic()
    if notebook in job.refused:
        result = NotebookGrade(notebook, FAILED, reason=job.refused[notebook])
    elif notebook not in job.files:
        result = NotebookGrade(notebook, MISSING, reason=_missing(job))
    elif reason := too_many_cells(job.files[notebook]):
        result = NotebookGrade(notebook, FAILED, reason=reason)
    else:
        result = _autograde(course, api, job, notebook, log)
    result.seconds = round(time.monotonic() - start, 1)
    log.append(f"----- {notebook}: {result.state} in {result.seconds:.1f} s")
    log.extend(f"  {line}" for line in result.status().messages())
    return result


def too_many_cells(notebook: bytes) -> str | None:
    """Why a notebook has too many cells to grade (``MAX_NOTEBOOK_CELLS``), if it has; a file
    that is not a notebook is left to nbgrader, which says so in its own words."""
    try:
        cells = json.loads(notebook).get("cells")
    except (ValueError, RecursionError, AttributeError):
        return None
    if not isinstance(cells, list) or len(cells) <= MAX_NOTEBOOK_CELLS:
        return None
    return (
        f"the notebook has {len(cells):,} cells, over {MAX_NOTEBOOK_CELLS:,}: "
        "submit the released notebook with your answers, without the extra cells"
    )


def _autograde(course: Course, api, job: GradingJob, notebook: str, log: list[str]) -> NotebookGrade:
    start = time.monotonic()
    with kernels.killed_after(job.notebook_timeout) as watchdog:
        success, nbgrader_log = autograde_notebook(api, job.student, notebook)
    log.append(
        f"\n===== {notebook}: nbgrader autograde ({'ok' if success else 'FAILED'}, "
        f"{time.monotonic() - start:.1f} s)\n{nbgrader_log}"
    )
    if watchdog.fired:
        reason = f"grading this notebook took longer than {job.notebook_timeout:g} s and was stopped"
        log.append(f"===== {notebook}: STOPPED — {reason}")
        return NotebookGrade(notebook, STOPPED, reason=reason)
    if not success:
        return NotebookGrade(notebook, FAILED, reason=failure_reason(nbgrader_log))
    autograded = course.autograded_notebook(job.student, notebook)
    result = NotebookGrade(
        notebook,
        GRADED,
        notes=success_notes(nbgrader_log, autograded, course.cell_timeout_seconds()),
        autograded=autograded.read_bytes(),
    )
    if not job.sandboxed:
        result.notes.append(UNSANDBOXED_NOTE)
    _read_grades(course, job.student, result)
    _check_trust(course, job, result)
    return result


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


def _read_grades(course: Course, student: str, result: NotebookGrade) -> None:
    """nbgrader's points and auto comments for the notebook, from the job's own gradebook."""
    with course.gradebook() as gb:
        submitted = gb.find_submission_notebook(result.notebook, ASSIGNMENT, student)
        for grade in sorted(submitted.grades, key=lambda g: g.name):
            passed = bool(grade.auto_score) and grade.auto_score == grade.max_score
            result.tests.append(
                GradedTest(
                    grade.name,
                    grade.max_score,
                    grade.auto_score,
                    [Decision(NBGRADER, "passed" if passed else "failed")],
                    needs_review=bool(grade.needs_manual_grade),
                )
            )
        result.comments = {c.name: c.auto_comment for c in submitted.comments if c.auto_comment}


def _check_trust(course: Course, job: GradingJob, result: NotebookGrade) -> None:
    """Withdraw the points the integrity scan or the verifier does not trust, and say in the
    grader's words why each test lost points (``trust.grade_reasons``). The verifier runs on
    every graded notebook, points or not (its verdict is the reason a failed test gives),
    except one that earned nothing and had a cell stopped for time: the verifier would only
    wait as long again."""
    errors = cell_errors(result.autograded or b"")
    if not any(t.auto_points for t in result.tests) and INTERRUPTED & set(errors.values()):
        _note_findings(course, job, result)
    else:
        _verify(course, job, result)
    result.reasons = grade_reasons(result.tests, result.verdicts, errors)


def _verify(course: Course, job: GradingJob, result: NotebookGrade) -> None:
    """The integrity scan and the verifier on the notebook: their verdicts, and the points
    they do not trust withdrawn."""
    notebook = result.notebook
    try:
        outcome = untrusted_tests(
            course.submitted_notebook(job.student, notebook),
            notebook,
            source=course.source_notebook(notebook),
            verify_timeout=job.verify_timeout,
            verify_seed=job.verify_seed,
            known_verdicts=job.known_verdicts,
        )
    except Exception as error:  # fail closed: points nobody could check are not given
        reason = grader_problem(
            one_line(
                f"the integrity checks could not run ({type(error).__name__}: {error}): "
                "0 points until a TA checks this notebook by hand"
            )
        )
        withdraw(result, dict.fromkeys(checked_tests(notebook), reason), GRADER, needs_review=True)
        return
    result.verdicts_key, result.verdicts = outcome.key, outcome.verdicts
    withdraw(result, outcome.reasons, None)


def _note_findings(course: Course, job: GradingJob, result: NotebookGrade) -> None:
    """The static scan's findings on a notebook that earned nothing: a failed test that
    used autograd then says so, not only its error. Only comments depend on it."""
    try:
        reasons = integrity_reasons(
            course.submitted_notebook(job.student, result.notebook),
            result.notebook,
            source=course.source_notebook(result.notebook),
        )
    except Exception:  # no points ride on it: nothing to fail closed for
        return
    withdraw(result, reasons, None)


def withdraw(
    result: NotebookGrade, reasons: dict[str, str], source: str | None, *, needs_review=False
) -> None:
    """Withdraw the points of every listed test that earned some; record the decision.
    A failed test keeps an integrity finding as a note for the student."""
    for test in result.tests:
        reason = reasons.get(test.test)
        if reason is None:
            continue
        if not test.auto_points:
            if reason.startswith("integrity:"):
                test.finding = reason
            continue
        where = source or (INTEGRITY if reason.startswith("integrity:") else VERIFIER)
        test.decisions.append(Decision(where, "withdrawn", reason))
        test.withdrawn = reason
        test.needs_review = needs_review


def main(argv: list[str] | None = None) -> int:
    """The local executor's worker: ``JOB`` and ``RESULT`` are pickle files it owns."""
    job_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    with open(job_path, "rb") as handle:
        job = pickle.load(handle)
    result = run_job(job)
    partial = Path(result_path + ".part")
    with open(partial, "wb") as handle:
        pickle.dump(result, handle)
    partial.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
