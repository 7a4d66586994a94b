"""How a test's verdict reaches the notebook: one line (and its JSON for the class report);
a failure is an exception that IPython shows as that line instead of a traceback."""

from __future__ import annotations

from dataclasses import fields

from ..course import VERDICT_MIME
from .check import CheckResult
from .problems import Problem


def show_verdict(test: str, passed: bool, problem: Problem | None, message: str, line: str) -> bool:
    """Show a test's one-line verdict. In a notebook: ONE display_data output whose bundle has
    ``line`` as "text/plain" and the verdict as ``VERDICT_MIME`` JSON (what grading records for
    the class report); elsewhere, the line printed. True when it was displayed in a notebook."""
    from IPython import get_ipython

    if get_ipython() is None:
        print(line)
        return False
    from IPython.display import display

    verdict = {"test": test, "passed": passed, "problem": problem and str(problem), "message": message}
    display({"text/plain": line, VERDICT_MIME: verdict}, raw=True)
    return True


class GradeFailure(AssertionError):
    """A wrong answer. Shown in the notebook as one line that says what is wrong and where."""

    def __init__(self, message: str, result: CheckResult | None = None, test: str | None = None):
        super().__init__(message)
        self.result = result
        self.test = test or (result.name if result is not None else "training")

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        from IPython import get_ipython

        line = f"❌ {self}"
        if get_ipython() is not None and not getattr(self, "_shown", False):  # IPython may render twice
            # The failure's verdict, recorded as a display_data output whose "text/plain" is
            # empty: the line itself stays the error's traceback, as before — nbgrader's 0, its
            # Validate button and the feedback show it there, and it is not shown twice.
            result = self.result
            problem, message = (
                (result.problem, result.message) if result is not None else (Problem.TRAINING, str(self))
            )
            self._shown = show_verdict(self.test, False, problem, message, "")
        return [line]


class AlreadyPrinted:
    """For results that the test functions have printed already: when one ends a notebook
    cell, IPython shows nothing more. (A trailing ``;`` would not do: nbval runs cells
    without history, and IPython then ignores it.)"""

    def _ipython_display_(self) -> None:
        pass


class PrintedResult(AlreadyPrinted, CheckResult):
    """A ``CheckResult`` that has been printed."""


class PrintedResults(AlreadyPrinted, list):
    """A list of ``CheckResult`` that have been printed."""


def printed(result: CheckResult) -> PrintedResult:
    return PrintedResult(**{f.name: getattr(result, f.name) for f in fields(CheckResult)})
