"""The grader proves itself before it grades anyone: the model answers must get full marks.

Before a run grades its first student, the solution notebooks (solutions/, as a pseudo-student
``MODEL_ANSWERS``) are graded through exactly the path students take — a ``GradingJob`` with
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

# Proofs this process has made (Dask workers: one per worker process), by what they prove.
_PROVEN: dict[tuple, str | None] = {}


def model_answers_job(template: GradingJob) -> GradingJob:
    """The job of the model answers, graded as ``template`` grades a student (sandbox,
    verifier, limits); a short notebook time limit (a test's) is raised to the default one."""
    return dataclasses.replace(
        template,
        student=MODEL_ANSWERS,
        files=dict(template.release.sources),
        refused={},
        notebook_timeout=max(template.notebook_timeout, NOTEBOOK_TIMEOUT),
        known_verdicts={},
    )


def proof_key(job: GradingJob) -> tuple:
    """What a proof depends on: the release, the sandbox, the threads and the limits."""
    return (
        hash(job.release.gradebook),
        tuple(sorted((nb, hash(content)) for nb, content in job.release.sources.items())),
        job.release.cell_timeout,
        job.sandboxed,
        job.threads,
        job.verify_timeout,
    )


def shortfall(result: GradingResult) -> str | None:
    """Why the model answers' result is not full marks, with the log's last lines (None: it is)."""
    problems = []
    not_graded: dict[str, list[str]] = {}  # reason → the notebooks it stopped (one line each)
    for notebook in result.notebooks:
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
    if not problems and len(result.notebooks) == len(NOTEBOOKS):
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


def check(result: GradingResult) -> None:
    """Raise ``GraderProblem`` unless the model answers got full marks."""
    why = shortfall(result)
    if why is not None:
        raise GraderProblem(why)


def prove_once(job: GradingJob, grade) -> None:
    """In this process, grade the model answers like ``job`` (once per ``proof_key``, with
    ``grade``: job → result) and raise ``GraderProblem`` if they are short of full marks."""
    key = proof_key(job)
    if key not in _PROVEN:
        _PROVEN[key] = shortfall(grade(model_answers_job(job)))
    if _PROVEN[key] is not None:
        raise GraderProblem(_PROVEN[key])
