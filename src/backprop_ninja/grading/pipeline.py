"""The instructor's pipeline, one function per step: register → autograde → feedback → export.

``autograde_class`` is the coordinator: it reads each student's submission once, sends a
grading job (``job.run_job``) to an executor (a local pool, or a Dask cluster), and records
every result through the one gradebook module (``gradebook.record``) as it arrives, with a
progress bar. Jobs never write the gradebook or the class's files; only this process does.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import stat
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..course import (
    ASSIGNMENT,
    FORKSERVER_VARIABLE,
    MAX_NOTEBOOK_BYTES,
    NOTEBOOKS,
    SANDBOX_FORKSERVER_VARIABLE,
)
from ..data import load_splits
from ..sandbox import build as sandbox
from ..text import printable
from . import gradebook
from .classdir import (
    Course,
    GradingError,
    grading_environment,
    prepare_environment,
)
from .collect import vet_exchange_inbound
from .executors import DaskExecutor, LocalExecutor
from .gradebook import register_assignment
from .job import UNSANDBOXED_NOTE
from .preload import forkserver_for
from .results import GradingJob, GradingResult
from .status import FAILED, GRADED, STOPPED, StudentStatus, read_status
from .trust import VERIFY_TIMEOUT

# A notebook whose grading (all cells, with the per-cell timeout, and the checks) takes longer
# than this is stopped and reported; the student's other notebooks are still graded.
NOTEBOOK_TIMEOUT = 900
# Verdicts of runs with a fixed verify seed (reproducible runs, tests): the same answer cells
# on the same seed (and time limit) get the same verdict, whichever run asks.
_VERDICTS_BY_SEED: dict[tuple[int, float], dict[str, dict[str, tuple[bool, str]]]] = {}

__all__ = ["autograde_class", "export_class", "feedback_class", "register_assignment"]


# ----------------------------------------------------------------------------- autograde
def select_shard(students: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Shard k of n (1-based): every n-th student of the sorted list, starting at the k-th."""
    if shard is None:
        return students
    k, n = shard
    if not 1 <= k <= n:
        raise GradingError(f"shard {k}/{n}: k must be between 1 and n")
    return sorted(students)[k - 1 :: n]


def autograde_class(
    course: Course,
    *,
    workers: int = 2,
    students: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    register: bool = True,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
    verify_timeout: float = VERIFY_TIMEOUT,
    verify_seed: int | None = None,
    progress: bool = True,
    use_forkserver: bool = True,
    fixed_seconds: dict[str, float] | None = None,
    sandboxed: bool = True,
    dask_scheduler: str | None = None,
) -> dict[str, StudentStatus]:
    """Autograde every student (or ``students``, or shard k of n): one grading job each, run
    by ``workers`` local worker processes or, with ``dask_scheduler``, on a Dask cluster.

    Returns each student's status (also written to status/<student>.json); the scores are in
    the gradebook, which only this coordinator writes (``gradebook.record``). One student's
    failure never stops the others. ``register=False``: the assignment is already registered
    (shards of a job array register once, beforehand). ``use_forkserver=False``: every worker
    and kernel a new interpreter (slower by seconds per notebook). ``fixed_seconds``: filled
    with the seconds of the steps done once per run ("register", "forkserver"), for the
    bench. ``sandboxed=False`` (``--no-sandbox``): the students' code runs without bubblewrap;
    every graded notebook's notes and feedback page then say so.
    """
    fixed_seconds = {} if fixed_seconds is None else fixed_seconds
    if sandboxed and dask_scheduler is None and sandbox.unavailable_message():
        raise GradingError(sandbox.unavailable_message())  # before anything is graded
    students = _students_to_grade(course, students, shard)
    with contextlib.ExitStack() as cleanup:
        began = time.monotonic()
        executor = _executor(dask_scheduler)  # an unreachable scheduler fails here, before grading
        if executor is not None:
            cleanup.callback(executor.close)
        if register:
            gradebook.register_assignment(course)
        gradebook.enrol(course, students)
        assignment = gradebook.release(course)
        fixed_seconds["register"] = time.monotonic() - began
        workers = max(1, min(workers, len(students)))
        threads = 1 if workers > 1 else None  # one torch thread per kernel when kernels run side by side
        # The verifier's verdicts by answers digest, in this process's memory: this run's only
        # (fresh secret seeds every run), or, with a fixed verify_seed, every run's with that seed.
        verdicts = (
            {} if verify_seed is None else _VERDICTS_BY_SEED.setdefault((verify_seed, verify_timeout), {})
        )

        def make_job(student: str) -> GradingJob:
            files, refused = read_submission(course, student)
            return GradingJob(
                student,
                assignment,
                files,
                refused,
                notebook_timeout=notebook_timeout,
                verify_timeout=verify_timeout,
                verify_seed=verify_seed,
                sandboxed=sandboxed,
                threads=threads,
                known_verdicts=dict(verdicts),
            )

        statuses: dict[str, StudentStatus] = {}
        bar = _progress_bar(len(students), workers, dask_scheduler, progress)
        cleanup.callback(bar.close)

        def on_result(result: GradingResult) -> None:
            statuses[result.student] = gradebook.record(course, result)
            for notebook in result.notebooks:
                if notebook.verdicts_key:
                    verdicts[notebook.verdicts_key] = notebook.verdicts
            failures = sum(r.state in (FAILED, STOPPED) for s in statuses.values() for r in s.notebooks)
            bar.update(1)
            bar.set_postfix_str(f"notebooks not graded: {failures}" if failures else "", refresh=True)

        if sandboxed:
            load_splits()  # its cache beside names.txt, which sandboxed kernels may only read
        if executor is not None:
            executor.run(students, make_job, on_result)
        else:
            began = time.monotonic()
            env = grading_environment()
            server = forkserver_for(threads) if use_forkserver else None
            if server is not None:
                env[FORKSERVER_VARIABLE] = str(server.path)
            confining = forkserver_for(threads, sandboxed=True) if use_forkserver and sandboxed else None
            if confining is not None:
                env[SANDBOX_FORKSERVER_VARIABLE] = str(confining.path)
            fixed_seconds["forkserver"] = time.monotonic() - began
            LocalExecutor(workers, env).run(students, make_job, on_result)
    return {student: statuses[student] for student in students}


def _students_to_grade(course: Course, students: list[str] | None, shard) -> list[str]:
    students = select_shard(list(students) if students else course.students(), shard)
    if not students:
        raise GradingError(
            f"no submissions in {course.submitted} (expected "
            f"<student>/{ASSIGNMENT}/<notebook>.ipynb; `make collect` puts them there)"
        )
    unknown = [s for s in students if not (course.submitted / s / ASSIGNMENT).is_dir()]
    if unknown:
        raise GradingError(f"no submission folder for {', '.join(unknown)} in {course.submitted}")
    return students


def _executor(dask_scheduler: str | None) -> DaskExecutor | None:
    return DaskExecutor(dask_scheduler) if dask_scheduler else None


def _progress_bar(total: int, workers: int, dask_scheduler: str | None, progress: bool):
    from tqdm.auto import tqdm

    where = f"on {dask_scheduler}" if dask_scheduler else f"{workers} worker{'s' if workers > 1 else ''}"
    return tqdm(
        total=total, unit="student", disable=not progress, desc=f"autograde ({where})", dynamic_ncols=True
    )


def read_submission(course: Course, student: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """The student's four notebooks as bytes, and the ones refused with the reason: only
    regular files are read (a link into solutions/ or a classmate's folder never is)."""
    files: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    for notebook in NOTEBOOKS:
        path = course.submitted_notebook(student, notebook)
        if not path.exists() and not path.is_symlink():
            continue
        reason = not_a_regular_submission(course, student, notebook)
        data = b"" if reason else _read_regular(path, MAX_NOTEBOOK_BYTES + 1)
        if not reason and len(data) > MAX_NOTEBOOK_BYTES:
            reason = too_large(path.lstat().st_size)
        if reason:
            refused[notebook] = reason
        else:
            files[notebook] = data
    return files, refused


def too_large(size: int) -> str:
    """Why a notebook file of ``size`` bytes is not graded."""
    return (
        f"the notebook is {size / 2**20:.0f} MiB, over {MAX_NOTEBOOK_BYTES // 2**20} MiB: "
        "clear its outputs (Edit → Clear Outputs of All Cells), save and submit again"
    )


def _read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file, opened without following a link (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


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
    # A link beside the notebook says someone tried: refuse rather than guess (only the
    # notebooks are ever read, but a TA should look).
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


# ------------------------------------------------------------------------------ feedback
def feedback_class(course: Course, *, workers: int = 2, students: list[str] | None = None) -> list[Path]:
    """Feedback HTML for every student (hidden tests stripped, withdrawn points explained),
    plus a page for each notebook that could not be graded. Returns the pages written; a
    student whose feedback fails is reported on stderr and the others carry on."""
    import multiprocessing

    students = list(students) if students else course.students()
    pages: list[Path] = []
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")  # a clean process: no threads inherited
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(students) or 1)), mp_context=context
    ) as pool:
        futures = {pool.submit(student_feedback, course, student): student for student in students}
        for future in as_completed(futures):
            try:
                pages.extend(future.result())
            except Exception as error:
                failures.append(f"{futures[future]}: {error}")
    for failure in sorted(failures):
        print(f"feedback FAILED for {failure}", file=sys.stderr)
    return sorted(pages)


def student_feedback(course: Course, student: str) -> list[Path]:
    """``nbgrader generate_feedback`` for one student, then the pages of ungraded notebooks."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)
    shutil.rmtree(course.feedback / student / ASSIGNMENT, ignore_errors=True)
    if any(course.autograded_notebook(student, nb).exists() for nb in NOTEBOOKS):
        from .feedback import generate

        prepare_environment()
        outcome = generate(course, student)  # tests named, totals at the top, math as MathML
        if not outcome["success"]:
            raise GradingError(
                f"generate_feedback failed for {student}:\n{outcome.get('log', '')}{outcome.get('error', '')}"
            )
    status = read_status(course.status, student)
    pages = []
    for nb in NOTEBOOKS:
        page = course.feedback_page(student, nb)
        if not page.exists():
            result = status.result(nb) if status else None
            reason = result.messages()[0] if result and result.messages() else "not graded yet"
            _write_page(page, student, nb, reason)
        pages.append(page)
    if status and any(UNSANDBOXED_NOTE in r.notes for r in status.notebooks):
        for page in pages:
            _add_banner(page, UNSANDBOXED_NOTE)
    return pages


def _add_banner(page: Path, text: str) -> None:
    """A notice at the top of a feedback page (right after <body>)."""
    content = page.read_text(encoding="utf-8")
    at = content.find(">", content.find("<body")) + 1
    banner = f"\n<p class='grading-notice'><strong>Note:</strong> {html.escape(text)}.</p>\n"
    page.write_text(content[:at] + banner + content[at:], encoding="utf-8")


def _write_page(page: Path, student: str, notebook: str, reason: str) -> None:
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(notebook)} — feedback</title></head><body>\n"
        f"<h1>{html.escape(notebook)}</h1>\n<p>Student: {html.escape(student)}</p>\n"
        f"<p><strong>This notebook was not graded automatically:</strong> {html.escape(reason)}</p>\n"
        "<p>Your other notebooks were graded as usual. Ask your teaching assistant if you "
        "think this is a mistake.</p>\n</body></html>\n",
        encoding="utf-8",
    )


# -------------------------------------------------------------------------------- export
def export_class(course: Course, *, canvas_column: str = ASSIGNMENT) -> tuple[Path, Path]:
    """grades.csv (nbgrader's export: one row per student), grades_by_notebook.csv (one row
    per student and notebook, with the state and the notes) and grades_canvas.csv (Canvas's
    gradebook import, with the LMS ids kept at collection; ``canvas_column`` heads the points)."""
    from nbgrader.plugins import CsvExportPlugin

    from .lms import read_ids, write_canvas_csv
    from .table import class_rows, neutralise_formulas, write_notebook_csv

    course.class_dir.mkdir(parents=True, exist_ok=True)
    with course.gradebook() as gb:
        CsvExportPlugin(to=str(course.grades_csv), assignment=[ASSIGNMENT]).export(gb)
    neutralise_formulas(course.grades_csv)
    rows = class_rows(course)
    write_notebook_csv(rows, course.notebook_grades_csv)
    totals = {row.student: row.total for row in rows}
    max_total = rows[0].max_total if rows else 0.0
    write_canvas_csv(course.canvas_csv, totals, max_total, read_ids(course.lms_ids), canvas_column)
    return course.grades_csv, course.notebook_grades_csv


# ------------------------------------------------------------------------------- collect
def collect_zip(course: Course, archive: Path) -> None:
    """Unpack an LMS download (see ZipCollectApp settings in grader/nbgrader_config.py) into
    submitted/<student>/backprop_ninja/ with ``nbgrader zip_collect``."""
    archive = Path(archive)
    if not archive.is_file():
        raise GradingError(f"no such file: {archive}")
    folder = course.downloaded / ASSIGNMENT / "archive"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(archive, folder / archive.name)
    ids = f"--LmsCollectorPlugin.ids_file={course.lms_ids}"  # the LMS user ids, for grades_canvas.csv
    if course.run_nbgrader("zip_collect", ASSIGNMENT, "--force", ids).returncode != 0:
        raise GradingError("nbgrader zip_collect failed (see above)")


def collect_exchange(course: Course) -> None:
    """``nbgrader collect``: the latest submissions from nbgrader's exchange (JupyterHub),
    read from a vetted copy of its inbound folder (``collect.vet_exchange_inbound``)."""
    config = course.config()
    exchange = Path(config.Exchange.root) if "root" in config.Exchange else Path("/srv/nbgrader/exchange")
    course_id = config.CourseDirectory.course_id
    course.class_dir.mkdir(parents=True, exist_ok=True)  # nbgrader opens the gradebook there
    with tempfile.TemporaryDirectory(prefix="exchange-") as vetted:
        inbound = Path(vetted, course_id, "inbound")
        inbound.mkdir(parents=True)
        vet_exchange_inbound(exchange / course_id / "inbound", inbound, _warn)
        command = ("collect", ASSIGNMENT, "--update", f"--Exchange.root={vetted}")
        if course.run_nbgrader(*command).returncode != 0:
            raise GradingError("nbgrader collect failed (see above)")


def _warn(line: str) -> None:
    print(f"collect: {printable(line)}", file=sys.stderr)


def graded_statuses(course: Course) -> dict[str, StudentStatus | None]:
    return {student: read_status(course.status, student) for student in course.students()}


def count_graded(statuses) -> int:
    return sum(1 for s in statuses.values() if s for r in s.notebooks if r.state == GRADED)
