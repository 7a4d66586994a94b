"""The grader proves itself before it grades anyone: the model answers must get full marks.

Before a run grades its first student, the solution notebooks (solutions/, as a pseudo-student
``MODEL_ANSWERS``) of the notebooks the run grades are graded through exactly the path students take — a ``GradingJob`` with
the run's sandbox, fork servers, verifier and limits, in the run's executor (every worker of a
Dask cluster proves itself once, ``prove_once``). Anything short of full marks means the grader
is broken here (a sandbox that cannot see the course, a kernel that cannot start, a course
module that does not import …), not that every student failed: the run stops with a
``GraderProblem`` that quotes the cause, and nothing is recorded for any student.
"""

from __future__ import annotations

import dataclasses
import json

from ..course import NOTEBOOKS, VERDICT_MIME
from ..text import printable
from .classdir import GraderProblem
from .results import NOTEBOOK_TIMEOUT, GradingJob, GradingResult, NotebookGrade
from .status import GRADED

MODEL_ANSWERS = "model-answers"  # the pseudo-student (its job stages its own gradebook)
LOG_LINES = 12  # how much of the job's log (the kernel's last lines, the sandbox's stderr) is quoted

# Proofs this process has made (Dask workers: one per worker process): (key, notebooks).
_PROVEN: set[tuple[tuple, frozenset[str]]] = set()


def model_answers_job(template: GradingJob) -> GradingJob:
    """The job of the model answers, graded as ``template`` grades a student (sandbox,
    verifier, limits): the notebooks ``template.files`` names (every notebook if it names
    none); a short notebook time limit (a test's) is raised to the default one."""
    return dataclasses.replace(
        template,
        student=MODEL_ANSWERS,
        files={
            nb: source for nb, source in template.release.sources.items() if nb in proved_notebooks(template)
        },
        refused={},
        notebook_timeout=max(template.notebook_timeout, NOTEBOOK_TIMEOUT),
        known_verdicts={},
    )


def proved_notebooks(template: GradingJob) -> frozenset[str]:
    """The notebooks a proof made from ``template`` covers: those its files name, or all."""
    return frozenset(template.files) or frozenset(NOTEBOOKS)


def proof_key(job: GradingJob) -> tuple:
    """What a proof depends on: the release, the sandbox, the threads and the limits (not the
    notebooks it covers: ``covered`` compares those)."""
    return (
        hash(job.release.gradebook),
        tuple(sorted((nb, hash(content)) for nb, content in job.release.sources.items())),
        job.release.cell_timeout,
        job.sandboxed,
        job.threads,
        job.verify_timeout,
    )


def shortfall(result: GradingResult, notebooks: frozenset[str] = frozenset(NOTEBOOKS)) -> str | None:
    """Why the model answers' result is not full marks on ``notebooks``, with the log's last
    lines (None: it is)."""
    problems = []
    not_graded: dict[str, list[str]] = {}  # reason → the notebooks it stopped (one line each)
    graded = [notebook for notebook in result.notebooks if notebook.notebook in notebooks]
    for notebook in graded:
        if notebook.state != GRADED:
            not_graded.setdefault(f"not graded ({notebook.state}): {notebook.reason}", []).append(
                notebook.notebook
            )
            continue
        for test in notebook.tests:
            if test.points < test.max_points or test.needs_review:
                why = test.withdrawn or _verdict(notebook, test.test) or "no reason recorded"
                problems.append(
                    f"{notebook.notebook} {test.test}: {test.points:g}/{test.max_points:g} — {why}"
                )
    problems = [f"{', '.join(names)}: {why}" for why, names in not_graded.items()] + problems
    if not problems and len(graded) == len(notebooks):
        return None
    tail = [line for line in result.log.splitlines() if line.strip()][-LOG_LINES:]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    lines = [
        "the model answers (solutions/) do not get full marks here, so no student is graded: "
        + "; ".join(problems[:3])
        + more,
        "last lines of the model answers' grading log:",
        *(f"  {line}" for line in tail),
    ]
    return "\n".join(printable(line) for line in lines)


def _verdict(notebook: NotebookGrade, test: str) -> str:
    """What the test cell of the autograded notebook said: its verdict, or its error."""
    try:
        cells = json.loads(notebook.autograded or b"{}").get("cells", [])
    except ValueError:
        return ""
    for cell in cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") != test:
            continue
        for output in cell.get("outputs", []):
            verdict = output.get("data", {}).get(VERDICT_MIME)
            if isinstance(verdict, dict) and verdict.get("message"):
                return str(verdict["message"])
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return ""


def check(result: GradingResult, notebooks: frozenset[str] = frozenset(NOTEBOOKS)) -> None:
    """Raise ``GraderProblem`` unless the model answers got full marks on ``notebooks``."""
    why = shortfall(result, notebooks)
    if why is not None:
        raise GraderProblem(why)


def covered(proofs, key: tuple, notebooks: frozenset[str]) -> bool:
    """Whether ``proofs`` (a set of ``(key, notebooks)``) holds a proof of ``key`` made on
    every one of ``notebooks``: a run that grades notebook 2 after one that proved all four
    does not prove it again."""
    return any(proved == key and notebooks <= covers for proved, covers in proofs)


def prove_once(job: GradingJob, grade) -> None:
    """In this process, grade the model answers of the notebooks ``job`` names like ``job``
    (once per ``proof_key`` and notebooks, with ``grade``: job → result) and raise
    ``GraderProblem`` if they are short of full marks."""
    key, notebooks = proof_key(job), proved_notebooks(job)
    if covered(_PROVEN, key, notebooks):
        return
    why = shortfall(grade(model_answers_job(job)), notebooks)
    if why is not None:
        raise GraderProblem(why)
    _PROVEN.add((key, notebooks))
