"""Where grading jobs run: a local pool of worker processes (the default) or a Dask cluster.

Both take the students in order, build each one's ``GradingJob`` when it is about to run (so
the job carries the verifier verdicts the run already has), and hand every ``GradingResult``
to the coordinator's callback in the coordinator's thread. A job whose worker dies is retried
once, then reported as not graded with the reason; the rest of the class goes on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import forkserver
from ..course import FORKSERVER_VARIABLE, NOTEBOOKS, SANDBOX_FORKSERVER_VARIABLE
from .classdir import GraderProblem, GradingError
from .results import GradingJob, GradingResult, NotebookGrade
from .status import FAILED, MISSING, STOPPED

MakeJob = Callable[[str], GradingJob]
OnResult = Callable[[GradingResult], None]
ATTEMPTS = 2  # a job whose worker dies is tried once more, then reported


def job_deadline(job: GradingJob) -> float:
    """Seconds after which a job is killed whatever it is doing (each notebook has its own,
    shorter limit inside the job; this catches a job stuck elsewhere)."""
    per_notebook = job.notebook_timeout + job.verify_timeout + 60
    return 120 + per_notebook * max(1, len(job.files))


def not_graded(job: GradingJob, reason: str, log: str = "") -> GradingResult:
    """The result of a job that never finished: every submitted notebook stopped, with the reason."""
    notebooks = []
    for nb in NOTEBOOKS:
        if nb in job.refused:
            notebooks.append(NotebookGrade(nb, FAILED, reason=job.refused[nb]))
        elif nb in job.files:
            notebooks.append(NotebookGrade(nb, STOPPED, reason=reason))
        else:
            notebooks.append(NotebookGrade(nb, MISSING, reason="not submitted"))
    return GradingResult(job.student, notebooks, log=log + f"\n===== NOT GRADED — {reason}")


# ----------------------------------------------------------------------------- local pool
class LocalExecutor:
    """``workers`` jobs at a time, each in a worker process of its own (forked by the fork
    server with nbgrader and torch imported, when it runs), killed as a group at its deadline."""

    def __init__(self, workers: int, env: dict):
        self.workers, self.env = workers, env
        self.stop = threading.Event()

    def run(self, students: list[str], make_job: MakeJob, on_result: OnResult) -> None:
        lock = threading.Lock()
        pool = ThreadPoolExecutor(max_workers=self.workers)
        try:
            futures = [pool.submit(self._grade, student, make_job, lock) for student in students]
            for future in as_completed(futures):
                on_result(future.result())
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _grade(self, student: str, make_job: MakeJob, lock: threading.Lock) -> GradingResult:
        with lock:  # the job is made from what the run knows now
            job = make_job(student)
        reason, printed = "", []
        for attempt in range(1, ATTEMPTS + 1):
            result, reason, output = self._attempt(job)
            if result is not None:
                return result
            printed.append(f"===== attempt {attempt}: {reason}\n{output}")
        return not_graded(job, f"{reason} (tried {ATTEMPTS} times)", log="\n".join(printed))

    def _attempt(self, job: GradingJob) -> tuple[GradingResult | None, str, str]:
        """One worker process for the job: (its result, or None and why), and what it printed."""
        with tempfile.TemporaryDirectory(prefix="grading-") as private:  # the coordinator's own
            job_file, result_file = Path(private, "job.pickle"), Path(private, "result.pickle")
            output = Path(private, "output.log")
            with open(job_file, "wb") as handle:
                pickle.dump(job, handle)
            command = [sys.executable, "-m", "backprop_ninja.grading.job", str(job_file), str(result_file)]
            scratch = Path(private, "tmp")  # the job's temporary files: removed with it, however it ends
            scratch.mkdir()
            with open(output, "wb") as log:
                process = forkserver.spawn(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**self.env, "TMPDIR": str(scratch)},
                    server_path=self.env.get(FORKSERVER_VARIABLE),
                )
                timed_out = self._wait(process, job_deadline(job))
            printed = output.read_text(encoding="utf-8", errors="replace")[-20_000:]
            if timed_out:
                return None, f"grading took longer than {job_deadline(job):g} s and was stopped", printed
            if process.returncode == 0 and result_file.exists():
                with open(result_file, "rb") as handle:
                    result: GradingResult = pickle.load(handle)
                if printed.strip():
                    result.log += f"\n===== the worker's own output\n{printed}"
                return result, "", printed
            return None, f"the grading worker crashed (exit code {process.returncode})", printed

    def _wait(self, process, deadline: float) -> bool:
        """Wait for the worker; kill its process group at the deadline or when stopped."""
        waited = 0.0
        try:
            while process.poll() is None:
                if self.stop.is_set():
                    raise KeyboardInterrupt
                if waited >= deadline:
                    _kill_group(process)
                    return True
                try:
                    process.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    waited += 0.5
        except BaseException:
            _kill_group(process)
            raise
        return False


def _kill_group(process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# ------------------------------------------------------------------------------ Dask
class DaskExecutor:
    """Jobs sent to a ``dask.distributed`` scheduler; workers need the installed course (its
    venv, data/names.txt, bubblewrap) but no filesystem shared with the coordinator."""

    def __init__(self, address: str, connect_timeout: float = 10):
        try:
            from distributed import Client

            self.client = Client(address, timeout=connect_timeout)
        except (OSError, TimeoutError) as error:
            raise GradingError(
                f"cannot reach the Dask scheduler at {address} ({type(error).__name__}): "
                "start it (`dask scheduler`) or check the address"
            ) from None

    def run(self, students: list[str], make_job: MakeJob, on_result: OnResult) -> None:
        from distributed import as_completed as dask_completed

        jobs = {student: make_job(student) for student in students}
        futures = {
            self.client.submit(
                run_job_on_worker, job, key=f"grade-{student}-{os.urandom(4).hex()}", pure=False
            ): student
            for student, job in jobs.items()
        }
        try:
            for future in dask_completed(futures):
                job = jobs[futures[future]]
                try:
                    result = future.result()
                except GraderProblem:  # a worker that joined late failed its own proof: stop
                    raise
                except Exception as error:  # a worker died (KilledWorker) or the job raised
                    result = not_graded(job, _dask_reason(error))
                on_result(result)
        finally:
            for future in futures:
                future.cancel()

    def prove(self, template: GradingJob) -> None:
        """Every worker of the cluster grades the model answers (``preflight``), all at once;
        ``GraderProblem`` (the first worker's cause) if any falls short of full marks."""
        workers = list(self.client.scheduler_info().get("workers", {}))
        if not workers:
            raise GraderProblem("the Dask cluster has no workers: start some (`dask worker …`)")
        # One proof per worker; should a worker die, its proof runs on another (which then has
        # proved itself) and the worker the cluster starts instead proves itself with its first job.
        futures = [
            self.client.submit(
                prove_on_worker,
                template,
                key=f"prove-{os.urandom(4).hex()}",
                workers=[address],
                allow_other_workers=True,
                pure=False,
            )
            for address in workers
        ]
        for future, address in zip(futures, workers):
            try:
                future.result()
            except GraderProblem as problem:
                raise GraderProblem(f"on the Dask worker {address}: {problem}") from None
            except Exception as error:
                raise GraderProblem(
                    f"the Dask worker {address} could not prove itself: {_dask_reason(error)}"
                ) from None

    def close(self) -> None:
        self.client.close()


def _prepare_worker(job: GradingJob) -> None:
    """A Dask worker's sandboxes are forked from a sandbox fork server of its own (started by
    its first sandboxed job, reused by the next ones)."""
    from .preload import forkserver_for

    if job.sandboxed and (server := forkserver_for(job.threads, sandboxed=True)) is not None:
        os.environ[SANDBOX_FORKSERVER_VARIABLE] = str(server.path)


def prove_on_worker(template: GradingJob) -> None:
    """On a Dask worker: grade the model answers as ``template`` would be (once per worker
    process and configuration); ``GraderProblem`` if they fall short of full marks."""
    from . import preflight
    from .job import run_job

    _prepare_worker(template)
    preflight.prove_once(template, run_job)


def run_job_on_worker(job: GradingJob) -> GradingResult:
    """``run_job`` on a Dask worker that has proved itself on the model answers (a worker
    that joined after the run began proves itself before its first student)."""
    from .job import run_job

    prove_on_worker(job)
    return run_job(job)


def _dask_reason(error: Exception) -> str:
    if type(error).__name__ == "KilledWorker":
        return "the Dask workers grading this student died (killed or out of memory), on retry too"
    return f"grading failed on the cluster ({type(error).__name__}: {error})"
