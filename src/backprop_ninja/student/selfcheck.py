"""``backprop-ninja check NOTEBOOK...``: the student's own self-check, headless.

Runs a copy of each notebook top to bottom in a fresh kernel (the notebook on disk is never
written), then reads every graded test cell's outcome: one line per test, the notebook's total,
and exit status 0 only if every test passed. The notebooks hold only visible tests; the
grader's verifier calls the same functions again on other, secret inputs. Notebook 4 trains for ``CHECK_STEPS``
steps here and its timing cells take one short round: the check is about the tests.

A cell that does not finish within its limit (``--timeout``, well under the grader's 30 s;
the set-up and training cells get ``LONG_CELL_SECONDS``) stops the run: the check names the
cell, and every test after it says it was not run because of that cell. A kernel that dies
is reported the same way. The file itself is opened by ``opening.open_notebook``: anything
that is not one of the course's notebooks gets one line that says what it is.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..cells import grade_id, is_answer, is_test, nbgrader_meta
from ..course import INSTALL_CELL_ID, QUICK_TIMING_VARIABLE, STEPS_VARIABLE, VERDICT_MIME
from ..judge.problems import Problem
from ..text import one_line as text_one_line
from .opening import open_notebook

CHECK_STEPS = 2000  # notebook 4's training steps during a check (as in CI)
CELL_TIMEOUT = 15  # seconds a cell may run by default: half the grader's 30 s per cell
# Cells that legitimately take long (imports and data, notebook 4's training and its test)
# may run this long, or the cell limit if that is longer.
LONG_CELL_SECONDS = 120
LONG_CELL_IDS = frozenset({INSTALL_CELL_ID, "setup", "test_training"})
TRAINING_CALL = "training.train("
# Exceptions whose message is already the course's one line for the student: shown without
# their class name (a student never sees ``StudentMessage:``).
COURSE_MESSAGES = frozenset({"GradeFailure", "StudentMessage", "ResultError", "StudentTimeout", "DataError"})


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
class Stop:
    """The cell that ended the run early: it did not finish in time, or its kernel died."""

    position: int  # the cell's 1-based position in the notebook
    name: str  # what the cell defines or its grade id ('' when neither)
    tests_before: int  # how many graded tests came before it
    seconds: float = 0  # the limit it ran into; 0: the kernel died
    is_test: bool = False

    @property
    def cell(self) -> str:
        return f"cell {self.position}" + (f" ({self.name})" if self.name else "")

    def describe(self) -> str:
        if self.seconds:
            return f"{self.cell} still running after {self.seconds:g} s — an endless loop?"
        return f"{self.cell} stopped the kernel (it crashed or exited) — look for exit(), os._exit or a huge tensor"

    def line(self) -> str:
        return f"❌ {self.describe()}"

    def not_run(self) -> str:
        """The reason of every test after the stopping cell."""
        return f"not run: {self.cell} did not finish"


@dataclass(frozen=True)
class NotebookCheck:
    """A notebook's tests, or why it could not be checked at all (``problem``)."""

    path: Path
    outcomes: tuple[TestOutcome, ...] = ()
    problem: str = ""
    stop: Stop | None = None

    @property
    def passed(self) -> bool:
        return not self.problem and bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def earned(self) -> float:
        return sum(o.points for o in self.outcomes if o.passed)

    @property
    def total(self) -> float:
        return sum(o.points for o in self.outcomes)

    def summary(self) -> str:
        """``name: 30/46 points — 12/20 tests pass``: the points and the count of passing tests."""
        passing = sum(o.passed for o in self.outcomes)
        verdict = (
            "all visible tests pass"
            if passing == len(self.outcomes)
            else f"{passing}/{len(self.outcomes)} tests pass"
        )
        return f"{self.path.name}: {self.earned:g}/{self.total:g} points — {verdict}"

    def failure_lines(self) -> list[str]:
        """One line per failing test (and the cell that stopped the run, in its place)."""
        lines = [o.line() for o in self.outcomes if not o.passed]
        if self.stop is not None and not self.stop.is_test:
            before = sum(not o.passed for o in self.outcomes[: self.stop.tests_before])
            lines.insert(before, self.stop.line())
        return lines

    def lines(self) -> list[str]:
        if self.problem:
            return [f"❌ {self.path.name}: {self.problem}"]
        lines = [o.line() for o in self.outcomes]
        if self.stop is not None and not self.stop.is_test:
            lines.insert(self.stop.tests_before, self.stop.line())
        return [*lines, self.summary()]


def one_line(text: str) -> str:
    """``text`` as one printable line of at most 300 characters (a student's message)."""
    return text_one_line(text, 300)


def error_of(cell) -> tuple[str, str] | None:
    """(exception name, message) of the error a cell raised, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), output.get("evalue", "")
    return None


def failure_reason(ename: str, evalue: str) -> str:
    """What a failed test cell's error tells the student, in one line."""
    if ename in COURSE_MESSAGES:  # the course's own verdict: already the diagnosis
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


def outcomes_of(executed, stop: Stop | None = None) -> tuple[TestOutcome, ...]:
    """The graded test cells of an executed notebook, in order, passed or failed; with a
    ``stop``, the test that stopped says so and the tests after it were not run."""
    outcomes = []
    for position, cell in enumerate(executed.cells, 1):
        if not is_test(cell):
            continue
        points = float(nbgrader_meta(cell).get("points", 0))
        gid = grade_id(cell) or "test"
        if stop is not None and position >= stop.position:
            reason = stop.describe() if position == stop.position else stop.not_run()
            outcomes.append(TestOutcome(gid, points, False, reason, Problem.NO_VERDICT))
            continue
        error = error_of(cell)
        reason = failure_reason(*error) if error else ""
        outcomes.append(TestOutcome(gid, points, error is None, reason, problem_of(cell, error)))
    return tuple(outcomes)


def setup_problem(executed) -> str:
    """Why the setup cell failed (then every test fails for that one reason), or ''."""
    for cell in executed.cells:
        if grade_id(cell) == "setup":
            error = error_of(cell)
            if error:
                return one_line(f"the setup cell failed with {error[0]}: {error[1]}")
    return ""


def cell_name(cell) -> str:
    """What a cell is called for a student: the function(s) it defines, else its grade id."""
    try:
        tree = ast.parse(cell.get("source") or "")
    except SyntaxError:
        tree = None
    defined = [node.name for node in getattr(tree, "body", []) if isinstance(node, ast.FunctionDef)]
    if defined and (is_answer(cell) or not grade_id(cell)):
        return ", ".join(defined[:3])
    return grade_id(cell) or ""


def cell_limit(cell, timeout: float) -> float:
    """How long ``cell`` may run: ``timeout``, or ``LONG_CELL_SECONDS`` for set-up and training."""
    if grade_id(cell) in LONG_CELL_IDS or TRAINING_CALL in (cell.get("source") or ""):
        return max(timeout, LONG_CELL_SECONDS)
    return timeout


def stop_at(nb, index: int, seconds: float) -> Stop:
    """The ``Stop`` for the cell at 0-based ``index`` (``seconds`` 0: the kernel died)."""
    cell = nb.cells[index]
    tests_before = sum(is_test(c) for c in nb.cells[:index])
    return Stop(index + 1, cell_name(cell), tests_before, seconds, is_test(cell))


def run_copy(nb, folder: Path, *, timeout: float = CELL_TIMEOUT) -> Stop | None:
    """Execute ``nb`` (in memory) in a fresh kernel whose working folder is ``folder``, each
    cell within its limit. Returns the cell that stopped the run, or None if every cell ran."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    env = {
        **os.environ,
        STEPS_VARIABLE: str(CHECK_STEPS),
        QUICK_TIMING_VARIABLE: "1",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    current = {"index": 0}

    def started(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout_func=lambda cell: cell_limit(cell, timeout),
        interrupt_on_timeout=False,  # a cell past its limit ends the run: the kernel is stopped
        shutdown_kernel="immediate",
        allow_errors=True,
        kernel_name="python3",
        on_cell_start=started,
        # The kernel's own start-up warnings are noise to a student.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        client.execute(env=env)
    except CellTimeoutError:
        index = current["index"]
        return stop_at(nb, index, cell_limit(nb.cells[index], timeout))
    except DeadKernelError:
        return stop_at(nb, current["index"], 0)
    return None


def check_notebook(path: Path, timeout: float = CELL_TIMEOUT) -> NotebookCheck:
    """Run the notebook at ``path`` (each cell within ``timeout`` seconds) and read its tests."""
    path = Path(path)
    opened = open_notebook(path)
    if opened.problem:
        return NotebookCheck(path, problem=opened.problem)
    nb = opened.nb
    try:
        stop = run_copy(nb, path.resolve().parent, timeout=timeout)
    except Exception:  # the kernel could not start: not the notebook's fault
        return NotebookCheck(
            path, problem="could not start a Python kernel — is ipykernel installed? (pip install ipykernel)"
        )
    problem = setup_problem(nb)
    return NotebookCheck(path, outcomes_of(nb, stop), problem, stop)


def run(paths: Iterable[Path], echo=print, timeout: float = CELL_TIMEOUT) -> int:
    """Check every notebook, print the lines as each finishes; 0 only if every test passed."""
    checks = []
    for path in paths:
        echo(f"checking {Path(path).name} (visible tests only) …")
        check = check_notebook(Path(path), timeout)
        for line in check.lines():
            echo(line)
        checks.append(check)
    if len(checks) > 1:
        earned = sum(o.points for c in checks for o in c.outcomes if o.passed and not c.problem)
        total = sum(o.points for c in checks for o in c.outcomes)
        passed = sum(c.passed for c in checks)
        echo(f"total: {earned:g}/{total:g} points; {passed}/{len(checks)} notebooks pass every visible test")
    if checks and all(c.passed for c in checks):
        echo(
            "The grader also checks your answers on other, secret inputs: only a general formula passes them."
        )
    return 0 if checks and all(c.passed for c in checks) else 1
