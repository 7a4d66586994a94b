"""The instructor's pipeline, one function per step: register → autograde → feedback → export.

``autograde_class`` grades the students in parallel: N threads each drive one worker process
at a time (``worker.grade_student``), with a progress bar, one log per student and a time
limit per notebook. Everything goes through one gradebook (SQLite waits for its lock; a
server database works the same way), so the result is one gradebook however many workers.
"""

from __future__ import annotations

import html
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import forkserver
from ..course import ASSIGNMENT, NOTEBOOKS
from ..data import load_splits
from ..grading import sandbox
from ..text import printable
from .collect import vet_exchange_inbound
from .course import Course, GradingError, grading_environment, prepare_environment
from .status import GRADED, STOPPED, NotebookResult, StudentStatus, read_status, write_status
from .trust import VERIFY_TIMEOUT
from .worker import UNSANDBOXED_NOTE, read_events

# A notebook whose grading (all cells, with the per-cell timeout, and the checks) takes longer
# than this is stopped and reported; the student's other notebooks are still graded.
NOTEBOOK_TIMEOUT = 900
RELEASE_SCRATCH = "grader/work/release"


# ------------------------------------------------------------------------------ register
def register_assignment(course: Course) -> None:
    """Record the assignment's cells, points and checksums in the gradebook, from solutions/.

    This is ``nbgrader generate_assignment`` writing into a scratch folder (grader/work/release),
    so that notebooks/ (the committed student version) is never touched here.
    """
    from nbgrader.apps import NbGraderAPI

    prepare_environment()
    config = course.config()
    config.CourseDirectory.release_directory = RELEASE_SCRATCH
    outcome = NbGraderAPI(config=config).generate_assignment(ASSIGNMENT, force=True, create=True)
    if not outcome["success"]:
        raise GradingError(
            "could not register the assignment in the gradebook "
            f"({course.db_url}):\n{outcome.get('log', '')}{outcome.get('error', '')}"
        )


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
) -> dict[str, StudentStatus]:
    """Autograde every student (or ``students``, or shard k of n) with ``workers`` processes.

    Returns each student's status (also written to status/<student>.json); the scores are in
    the gradebook. One student's failure never stops the others. ``register=False``: the
    assignment is already registered (shards of a job array register once, beforehand).
    ``use_forkserver=False``: every worker, kernel and verifier child a new interpreter
    (slower by seconds per notebook; the fork server's own fallback when it cannot start).
    ``fixed_seconds``: filled with the seconds of the steps done once per run, whatever the
    class's size ("register", "forkserver"), for the bench's per-submission figure.
    ``sandboxed=False`` (``--no-sandbox``): the students' kernels and the verifier's children
    run without bubblewrap; every graded notebook's notes and feedback page then say so.
    """
    fixed_seconds = {} if fixed_seconds is None else fixed_seconds
    if sandboxed and sandbox.unavailable_message():  # before anything is graded
        raise GradingError(sandbox.unavailable_message())
    began = time.monotonic()
    from tqdm.auto import tqdm

    students = select_shard(list(students) if students else course.students(), shard)
    if not students:
        raise GradingError(
            f"no submissions in {course.submitted} (expected "
            f"<student>/{ASSIGNMENT}/<notebook>.ipynb; `make collect` puts them there)"
        )
    unknown = [s for s in students if not (course.submitted / s / ASSIGNMENT).is_dir()]
    if unknown:
        raise GradingError(f"no submission folder for {', '.join(unknown)} in {course.submitted}")
    if register:
        register_assignment(course)
    fixed_seconds["register"] = time.monotonic() - began
    for folder in (course.logs, course.status, course.work):
        folder.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, len(students)))
    threads = 1 if workers > 1 else None  # one torch thread per kernel when kernels run side by side
    bar = tqdm(
        total=len(students) * len(NOTEBOOKS),
        unit="notebook",
        disable=not progress,
        desc=f"autograde ({workers} worker{'s' if workers > 1 else ''})",
        dynamic_ncols=True,
    )
    lock = threading.Lock()

    def advance(student: str, result: NotebookResult) -> None:
        with lock:
            bar.update(1)
            bar.set_postfix_str(f"{student}/{result.notebook}: {result.state}", refresh=True)

    options = ["--verify-timeout", str(verify_timeout)]
    if verify_seed is not None:
        options += ["--verify-seed", str(verify_seed)]
    if threads is not None:
        options += ["--threads", str(threads)]
    statuses: dict[str, StudentStatus] = {}
    # The verifier's verdicts on identical answer cells are shared within this run only.
    cache = Path(tempfile.mkdtemp(prefix="verify-cache-", dir=course.work))
    stop = threading.Event()  # Ctrl-C: the workers run in sessions of their own, stop them
    # Workers, kernels and verifier children forked with torch and nbgrader imported.
    began = time.monotonic()
    server = forkserver.start(grading_environment(threads=threads)) if use_forkserver else None
    fixed_seconds["forkserver"] = time.monotonic() - began
    env = grading_environment()
    env[sandbox.SANDBOX_VARIABLE] = "1" if sandboxed else "0"
    if sandboxed:
        load_splits()  # its cache beside names.txt, which sandboxed kernels may only read
    if server is not None:
        env[forkserver.SOCKET_VARIABLE] = str(server.path)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {
            pool.submit(
                _grade_in_workers,
                course,
                student,
                advance=advance,
                notebook_timeout=notebook_timeout,
                stop=stop,
                env=env,
                options=options + ["--verify-cache", str(cache)],
            ): student
            for student in students
        }
        for future in as_completed(futures):
            statuses[futures[future]] = future.result()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        shutil.rmtree(cache, ignore_errors=True)
        if server is not None:
            server.stop()
    return {student: statuses[student] for student in students}


def _grade_in_workers(
    course: Course,
    student: str,
    *,
    advance,
    notebook_timeout: float,
    options: list[str],
    env: dict,
    stop: threading.Event | None = None,
) -> StudentStatus:
    """Grade one student in worker processes: a new one after a notebook had to be stopped."""
    log_path = course.logs / f"{student}.log"
    events = course.status / f"{student}.events.jsonl"
    log_path.unlink(missing_ok=True)
    events.unlink(missing_ok=True)
    results: dict[str, NotebookResult] = {}
    remaining = list(NOTEBOOKS)
    fresh = True
    with open(log_path, "ab") as log:
        while remaining:
            command = [
                sys.executable,
                "-m",
                "backprop_ninja.classroom",
                "grade-student",
                student,
                "--notebooks",
                ",".join(remaining),
                "--events",
                str(events),
                *options,
                *course.worker_options(),
            ]
            if fresh:
                command.append("--fresh")
            seen = len(read_events(events))
            outcome = _run_worker(
                command,
                log,
                events,
                seen,
                notebook_timeout,
                lambda result: _record(results, student, result, advance),
                env,
                stop,
            )
            if all(nb in results for nb in remaining):
                break
            lost = next(nb for nb in remaining if nb not in results)
            if outcome.started is None:  # it died before grading anything: do not loop
                reason = (
                    f"the grading worker failed before grading (exit code {outcome.returncode}); "
                    f"see {log_path}"
                )
                for nb in remaining:
                    if nb not in results:
                        results[nb] = NotebookResult(nb, STOPPED, reason=reason)
                        advance(student, results[nb])
                break
            reason = (
                f"grading this notebook took longer than {notebook_timeout:g} s and was stopped"
                if outcome.timed_out
                else f"the grading worker crashed (exit code {outcome.returncode}); see {log_path}"
            )
            log.write(f"\n===== {lost}: STOPPED — {reason}\n".encode())
            log.flush()
            mark_ungraded(course, student, lost)
            results[lost] = NotebookResult(lost, STOPPED, reason=reason)
            advance(student, results[lost])
            remaining = [nb for nb in remaining if nb not in results]
            fresh = False
    status = StudentStatus(student, [results[nb] for nb in NOTEBOOKS])
    write_status(course.status, status)
    events.unlink(missing_ok=True)
    return status


def _record(results: dict[str, NotebookResult], student: str, result: NotebookResult, advance) -> None:
    results[result.notebook] = result
    advance(student, result)


def mark_ungraded(course: Course, student: str, notebook: str) -> None:
    """After a stopped worker: leave the notebook as nbgrader leaves a failed one (no
    scores, needs manual grading, no autograded copy), whatever step it was stopped in."""
    from nbgrader.api import MissingEntry

    course.autograded_notebook(student, notebook).unlink(missing_ok=True)
    with course.gradebook() as gb:
        try:
            grades = gb.find_submission_notebook(notebook, ASSIGNMENT, student).grades
        except MissingEntry:
            return
        for grade in grades:
            grade.auto_score = None
            grade.manual_score = None
            grade.needs_manual_grade = True
        gb.db.commit()


class _WorkerOutcome:
    def __init__(self, returncode: int | None, timed_out: bool, started: str | None):
        self.returncode, self.timed_out, self.started = returncode, timed_out, started


def _run_worker(
    command,
    log,
    events: Path,
    seen: int,
    notebook_timeout: float,
    on_result,
    env: dict,
    stop: threading.Event | None = None,
) -> _WorkerOutcome:
    """Run one worker; report each finished notebook; stop it if a notebook runs too long
    (or when ``stop`` is set: the parent was interrupted)."""
    process = forkserver.spawn(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        server_path=env.get(forkserver.SOCKET_VARIABLE),
    )
    current, since, first_start, timed_out = None, 0.0, None, False
    try:
        while True:
            finished = process.poll() is not None
            for event in read_events(events)[seen:]:
                seen += 1
                if event["event"] == "start":
                    current, since = event["notebook"], time.monotonic()
                    first_start = first_start or current
                elif event["event"] == "done":
                    event.pop("event")
                    on_result(NotebookResult.from_dict(event))
                    current = None
            if finished:
                break
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if current is not None and time.monotonic() - since > notebook_timeout:
                timed_out = True
                _kill_group(process)
                break
            time.sleep(0.25)
    except BaseException:  # Ctrl-C in the parent: do not leave workers behind
        _kill_group(process)
        raise
    return _WorkerOutcome(process.returncode, timed_out, first_start)


def _kill_group(process: subprocess.Popen) -> None:
    """Stop a worker and everything it started in its session (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


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
    from .report import class_rows, write_notebook_csv

    course.class_dir.mkdir(parents=True, exist_ok=True)
    with course.gradebook() as gb:
        CsvExportPlugin(to=str(course.grades_csv), assignment=[ASSIGNMENT]).export(gb)
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
