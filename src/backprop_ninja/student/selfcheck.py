"""``backprop-ninja check NOTEBOOK...``: the student's own self-check, headless.

Runs a copy of each notebook top to bottom in a fresh kernel (the notebook on disk is never
written), then reads every graded test cell's outcome: one line per test, the notebook's total,
and exit status 0 only if every test passed. Only the visible tests run — the grader's hidden
tests call the same functions on other, secret inputs. Notebook 4 trains for ``CI_STEPS``
steps here and its timing cells take one short round: the check is about the tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..cells import grade_id, is_test, nbgrader_meta, read_notebook
from ..course import QUICK_TIMING_VARIABLE, STEPS_VARIABLE, VERDICT_MIME
from ..judge.problems import Problem
from ..text import printable

CHECK_STEPS = 2000  # notebook 4's training steps during a check (as in CI)
CELL_TIMEOUT = 300  # seconds per cell; a longer one is interrupted and the check goes on


@dataclass(frozen=True)
class TestOutcome:
    """One graded test cell after the run."""

    grade_id: str
    points: float
    passed: bool
    reason: str = ""  # why it failed, one line
    problem: Problem | None = None  # what its verdict names (the grader's vocabulary)

    def line(self) -> str:
        earned = self.points if self.passed else 0
        head = f"{'✅' if self.passed else '❌'} {self.grade_id} ({earned:g}/{self.points:g})"
        return head if self.passed else f"{head}: {self.reason}"


@dataclass(frozen=True)
class NotebookCheck:
    """A notebook's tests, or why it could not be checked at all (``problem``)."""

    path: Path
    outcomes: tuple[TestOutcome, ...] = ()
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem and bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def lines(self) -> list[str]:
        if self.problem:
            return [f"❌ {self.path.name}: {self.problem}"]
        earned = sum(o.points for o in self.outcomes if o.passed)
        total = sum(o.points for o in self.outcomes)
        failing = sum(not o.passed for o in self.outcomes)
        verdict = "all visible tests pass" if failing == 0 else f"{failing} test(s) failing"
        return [o.line() for o in self.outcomes] + [
            f"{self.path.name}: {earned:g}/{total:g} points — {verdict}"
        ]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters."""
    flat = " ".join(printable(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_of(cell) -> tuple[str, str] | None:
    """(exception name, message) of the error a cell raised, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), output.get("evalue", "")
    return None


def failure_reason(ename: str, evalue: str) -> str:
    """What a failed test cell's error tells the student, in one line."""
    if ename == "GradeFailure":  # the course's own verdict: already the diagnosis
        return one_line(evalue)
    if ename == "NameError":
        return one_line(f"{evalue} — run the cell that defines it (did it raise an error?)")
    return one_line(f"{ename}: {evalue}")


def problem_of(cell, error: tuple[str, str] | None) -> Problem | None:
    """The problem a failed test cell's verdict names (``VERDICT_MIME``), else its error's kind."""
    if error is None:
        return None
    for output in cell.get("outputs", []):
        verdict = output.get("data", {}).get(VERDICT_MIME)
        if isinstance(verdict, dict) and verdict.get("problem") in set(Problem):
            return Problem(verdict["problem"])
    return Problem.MISSING if error[0] == "NameError" else Problem.ERROR


def outcomes_of(executed) -> tuple[TestOutcome, ...]:
    """The graded test cells of an executed notebook, in order, passed or failed."""
    outcomes = []
    for cell in executed.cells:
        if not is_test(cell):
            continue
        points = float(nbgrader_meta(cell).get("points", 0))
        error = error_of(cell)
        reason = failure_reason(*error) if error else ""
        outcome = TestOutcome(
            grade_id(cell) or "test", points, error is None, reason, problem_of(cell, error)
        )
        outcomes.append(outcome)
    return tuple(outcomes)


def setup_problem(executed) -> str:
    """Why the setup cell failed (then every test fails for that one reason), or ''."""
    for cell in executed.cells:
        if grade_id(cell) == "setup":
            error = error_of(cell)
            if error:
                return one_line(f"the setup cell failed with {error[0]}: {error[1]}")
    return ""


def run_copy(nb, folder: Path, *, timeout: int = CELL_TIMEOUT):
    """Execute ``nb`` (in memory) in a fresh kernel whose working folder is ``folder``."""
    from nbclient import NotebookClient

    env = {
        **os.environ,
        STEPS_VARIABLE: str(CHECK_STEPS),
        QUICK_TIMING_VARIABLE: "1",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    client = NotebookClient(
        nb,
        timeout=timeout,
        interrupt_on_timeout=True,
        allow_errors=True,
        kernel_name="python3",
        # The kernel's own start-up warnings are noise to a student.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=env)
    return nb


def check_notebook(path: Path) -> NotebookCheck:
    """Run the notebook at ``path`` and read its visible tests."""
    path = Path(path)
    if not path.is_file():
        return NotebookCheck(path, problem="no such file — give the path of one of your .ipynb notebooks")
    try:
        nb = read_notebook(path)
    except Exception as error:  # not JSON, not a notebook
        return NotebookCheck(path, problem=one_line(f"cannot be read as a notebook ({error})"))
    if not any(is_test(cell) for cell in nb.cells):
        return NotebookCheck(path, problem="has no graded tests: is it one of the course's notebooks?")
    try:
        executed = run_copy(nb, path.resolve().parent)
    except Exception as error:  # the kernel died or could not start
        return NotebookCheck(path, problem=one_line(f"could not be run: {type(error).__name__}: {error}"))
    problem = setup_problem(executed)
    return NotebookCheck(path, outcomes_of(executed), problem)


def run(paths: Iterable[Path], echo=print) -> int:
    """Check every notebook, print the lines as each finishes; 0 only if every test passed."""
    checks = []
    for path in paths:
        echo(f"checking {Path(path).name} (visible tests only) …")
        check = check_notebook(Path(path))
        for line in check.lines():
            echo(line)
        checks.append(check)
    if len(checks) > 1:
        earned = sum(o.points for c in checks for o in c.outcomes if o.passed and not c.problem)
        total = sum(o.points for c in checks for o in c.outcomes)
        passed = sum(c.passed for c in checks)
        echo(f"total: {earned:g}/{total:g} points; {passed}/{len(checks)} notebooks pass every visible test")
    if checks and all(c.passed for c in checks):
        echo("The grader will also run hidden tests on other inputs: only a general formula passes them.")
    return 0 if checks and all(c.passed for c in checks) else 1
