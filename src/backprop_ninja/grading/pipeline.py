"""The coordinator of ``autograde``: jobs through an executor, results into the gradebook.

``autograde_class`` reads each student's submission once (``intake.read_submission``), first
proves the grader on the model answers (``preflight``: exit 3 and nothing recorded when they
fall short of full marks), then sends one grading job per student (``job.run_job``) to an
executor (a local pool, or a Dask cluster) and records every result through the one gradebook
module (``gradebook.record``) as it arrives, with a progress bar. Jobs never write the gradebook
or the class's files; only this process does. The other steps live beside it: collect.py
(collect_zip, collect_exchange), feedback.py (feedback_class), export.py (export_class).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from dataclasses import dataclass, field

from ..course import ASSIGNMENT, FORKSERVER_VARIABLE, SANDBOX_FORKSERVER_VARIABLE
from ..data import load_splits
from ..sandbox import build as sandbox
from . import gradebook, preflight
from .classdir import Course, GraderProblem, GradingError, grading_environment
from .executors import DaskExecutor, LocalExecutor
from .gradebook import register_assignment
from .intake import read_submission, submitted_notebooks
from .preload import forkserver_for
from .results import NOTEBOOK_TIMEOUT, GradingJob, GradingResult
from .status import FAILED, STOPPED, StudentStatus
from .trust import VERIFY_TIMEOUT

# Verdicts of runs with a fixed verify seed (reproducible runs, tests): the same answer cells
# on the same seed (and time limit) get the same verdict, whichever run asks.
_VERDICTS_BY_SEED: dict[tuple[int, float], dict[str, dict[str, tuple[bool, str]]]] = {}

__all__ = ["AutogradeOptions", "Interrupted", "autograde_class", "read_submission", "register_assignment"]


@dataclass
class AutogradeOptions:
    """How ``autograde_class`` grades (``python -m backprop_ninja.grading autograde --help``)."""

    workers: int = 2  # local worker processes: students graded at once
    students: list[str] | None = None  # None: everyone in submitted/
    shard: tuple[int, int] | None = None  # (k, n): every n-th student from the k-th (job arrays)
    register: bool = True  # False: the assignment is registered already (`register`, once per array)
    notebook_timeout: float = NOTEBOOK_TIMEOUT  # seconds one notebook may take in all
    verify_timeout: float = VERIFY_TIMEOUT  # seconds for the verifier per notebook
    verify_seed: int | None = None  # None: secret fresh seeds each run (a seed: reproducible runs)
    progress: bool = True  # a progress bar
    use_forkserver: bool = True  # False: every worker and kernel a new interpreter (slower)
    sandboxed: bool = True  # False (--no-sandbox): students' code WITHOUT the sandbox; grades say so
    dask_scheduler: str | None = None  # tcp://HOST:PORT: jobs on a Dask cluster's workers
    # Filled with the seconds of the steps done once per run ("register", "forkserver",
    # "preflight"), for the bench.
    fixed_seconds: dict[str, float] = field(default_factory=dict)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during autograde: ``graded`` students were recorded in full, of ``total``."""

    def __init__(self, graded: list[str], total: int):
        super().__init__(f"{len(graded)} of {total} students graded")
        self.graded, self.total = graded, total


def select_shard(students: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Shard k of n (1-based): every n-th student of the sorted list, starting at the k-th."""
    if shard is None:
        return students
    k, n = shard
    if not 1 <= k <= n:
        raise GradingError(f"shard {k}/{n}: k must be between 1 and n")
    return sorted(students)[k - 1 :: n]


def autograde_class(
    course: Course, options: AutogradeOptions | None = None, **overrides
) -> dict[str, StudentStatus]:
    """Autograde every student (``options``, or its fields as keywords): one grading job each,
    run by local worker processes or on a Dask cluster, after the model answers proved the
    grader (``GraderProblem`` if they do not get full marks: nothing is recorded then).

    Returns each student's status (also written to status/<student>.json); the scores are in
    the gradebook, which only this coordinator writes (``gradebook.record``); a regrade's
    changes are in each status's ``changes``. One student's failure never stops the others.
    Ctrl-C records no half a student and raises ``Interrupted`` with who was graded.
    """
    options = dataclasses.replace(options or AutogradeOptions(), **overrides)
    if options.sandboxed and options.dask_scheduler is None and sandbox.unavailable_message():
        raise GraderProblem(sandbox.unavailable_message())  # before anything is graded
    students = _students_to_grade(course, options.students, options.shard)
    fixed = options.fixed_seconds
    with contextlib.ExitStack() as cleanup:
        began = time.monotonic()
        dask = _executor(options.dask_scheduler)  # an unreachable scheduler fails here, before grading
        if dask is not None:
            cleanup.callback(dask.close)
        release = gradebook.release(course)  # a private registration: the class's gradebook untouched
        workers = max(1, min(options.workers, len(students)))
        threads = 1 if workers > 1 else None  # one torch thread per kernel when kernels run side by side
        # The verifier's verdicts by answers digest, in this process's memory: this run's only
        # (fresh secret seeds every run), or, with a fixed verify_seed, every run's with that seed.
        seed = options.verify_seed
        verdicts = {} if seed is None else _VERDICTS_BY_SEED.setdefault((seed, options.verify_timeout), {})

        def job_for(student: str, files=None, refused=None) -> GradingJob:
            if files is None:
                files, refused = read_submission(course, student)
            return GradingJob(
                student,
                release,
                files,
                refused or {},
                notebook_timeout=options.notebook_timeout,
                verify_timeout=options.verify_timeout,
                verify_seed=seed,
                sandboxed=options.sandboxed,
                threads=threads,
                known_verdicts=dict(verdicts),
            )

        if options.sandboxed:
            load_splits()  # its cache beside names.txt, which sandboxed kernels may only read
        local = None
        if dask is None:
            local = _local_executor(workers, threads, options)
            fixed["forkserver"] = time.monotonic() - began
        began = time.monotonic()
        # The model answers of the notebooks this run grades (any student's file), as a student's.
        graded = submitted_notebooks(course, students)
        proved = {nb: source for nb, source in release.sources.items() if nb in graded}
        _prove(dask, local, job_for(preflight.MODEL_ANSWERS, proved, {}), options)
        fixed["preflight"] = time.monotonic() - began
        if options.register:
            gradebook.register_assignment(course)
        gradebook.enrol(course, students)
        fixed["register"] = fixed.get("register", 0.0) + time.monotonic() - began - fixed["preflight"]
        statuses: dict[str, StudentStatus] = {}
        bar = _progress_bar(len(students), workers, options)
        cleanup.callback(bar.close)

        def on_result(result: GradingResult) -> None:
            with _interrupt_deferred():  # a student is recorded in full or not at all
                statuses[result.student] = gradebook.record(course, result)
            for notebook in result.notebooks:
                if notebook.verdicts_key:
                    verdicts[notebook.verdicts_key] = notebook.verdicts
            failures = sum(r.state in (FAILED, STOPPED) for s in statuses.values() for r in s.notebooks)
            bar.update(1)
            bar.set_postfix_str(f"notebooks not graded: {failures}" if failures else "", refresh=True)

        try:
            (dask or local).run(students, job_for, on_result)  # type: ignore[union-attr]
        except KeyboardInterrupt:
            raise Interrupted(sorted(statuses), len(students)) from None
    return {student: statuses[student] for student in students}


def _local_executor(workers: int, threads: int | None, options: AutogradeOptions) -> LocalExecutor:
    """The local pool, with the run's fork servers (when they start) in its environment."""
    env = grading_environment()
    server = forkserver_for(threads) if options.use_forkserver else None
    if server is not None:
        env[FORKSERVER_VARIABLE] = str(server.path)
    confining = (
        forkserver_for(threads, sandboxed=True) if options.use_forkserver and options.sandboxed else None
    )
    if confining is not None:
        env[SANDBOX_FORKSERVER_VARIABLE] = str(confining.path)
    return LocalExecutor(workers, env)


# Proofs the coordinator made with its local pool (a process that grades several times: tests,
# the bench), by what they prove and how the workers start.
_PROVEN_LOCALLY: set[tuple[tuple, frozenset[str]]] = set()


def _prove(dask: DaskExecutor | None, local: LocalExecutor | None, template: GradingJob, options) -> None:
    """The model answers through the run's executor: every Dask worker proves itself, the
    local pool once per process and configuration. ``GraderProblem`` if they fall short."""
    if dask is not None:
        dask.prove(template)
        return
    assert local is not None
    key = (preflight.proof_key(template), options.use_forkserver, tuple(sorted(local.env.items())))
    notebooks = preflight.proved_notebooks(template)
    if preflight.covered(_PROVEN_LOCALLY, key, notebooks):
        return
    results: list[GradingResult] = []
    local.run([preflight.MODEL_ANSWERS], lambda _: preflight.model_answers_job(template), results.append)
    preflight.check(results[0], notebooks)
    _PROVEN_LOCALLY.add((key, notebooks))


@contextlib.contextmanager
def _interrupt_deferred():
    """Ctrl-C inside the block takes effect when it ends (only in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def _students_to_grade(course: Course, students: list[str] | None, shard) -> list[str]:
    students = select_shard(list(students) if students else course.students(), shard)
    if not students:
        raise GradingError(
            f"no submissions in {course.submitted} (expected "
            f"<student>/{ASSIGNMENT}/<notebook>.ipynb; `make collect` puts them there)"
        )
    unknown = [s for s in students if not (course.submitted / s).is_dir()]
    if unknown:
        raise GradingError(f"no submission folder for {', '.join(unknown)} in {course.submitted}")
    return students


def _executor(dask_scheduler: str | None) -> DaskExecutor | None:
    return DaskExecutor(dask_scheduler) if dask_scheduler else None


def _progress_bar(total: int, workers: int, options: AutogradeOptions):
    from tqdm.auto import tqdm

    where = (
        f"on {options.dask_scheduler}"
        if options.dask_scheduler
        else f"{workers} worker{'s' if workers > 1 else ''}"
    )
    return tqdm(
        total=total,
        unit="student",
        disable=not options.progress,
        desc=f"autograde ({where})",
        dynamic_ncols=True,
    )
